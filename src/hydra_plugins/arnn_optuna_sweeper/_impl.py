"""Optuna's ask-and-tell loop over Hydra's launcher, with pruning by run extension.

Each batch of `n_jobs` trials is asked of the study at once and launched as one batch (one job
per trial and seed). Without a pruner a trial trains to train.steps. With one, it trains to the
budgets min_steps, min_steps * eta, ... train.steps one after the other: each budget relaunches
the trial's jobs in their own directories with the larger train.steps, so the runner extends
them from their checkpoints (bit-identical to training to that count at once), and the trial
reports its score there (`trial.report`); when the pruner says so (`trial.should_prune`) it
stops, its records marked `pruned`. A trial's score is its grid point's (arnn.points: the mean
of the best validation accuracy over its seeds, a seed that did not complete counting 0).

A trial's directory is named by its settings, so a configuration proposed again continues from,
or is answered by, its record; a failed trial (no seed completed) is told FAIL and the study goes
on. The study is kept in the sweep directory (`_journal`); running the same command again adds
`n_trials` trials, and trials a killed sweep left running are told FAIL first.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from arnn.errors import ConfigError, invalid
from arnn.points import score
from arnn.results import RunResult, Status, evaluation_summary
from arnn.storage import DirLock, Folder
from arnn.sweeps import budgets, outcome, owned, save_multirun

from ._journal import FolderJournal, refuse_an_old_study
from .config import PRUNERS, SAMPLERS

METRIC = "best_val_accuracy"  # what train.py returns: a trial's objective
MAX_DIRNAME = 150


def distribution(override: Override) -> BaseDistribution:
    """A sweep override of Hydra's syntax as Optuna's distribution, as Hydra's Optuna sweeper
    reads it: choice(...) and a, b, c are categorical, interval(a, b) uniform (log with
    tag(log, ...)), range(a, b[, step]) integers from a to b."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        ints = isinstance(value.start, int) and isinstance(value.end, int)
        kind = IntDistribution if ints else FloatDistribution
        return kind(value.start, value.end, log="log" in value.tags)
    if isinstance(value, RangeSweep) and not value.shuffle:
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The distributions of the sweep overrides, and the other overrides (fixed for all)."""
    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if key in ("train.steps", "hydra.sweep.subdir"):
            if override.is_sweep_override():
                raise ConfigError(f"{override.input_line} is invalid: the Optuna sweeper sets "
                                  f"{key} itself (train.steps is a trial's budget: give one "
                                  "value)")
        elif override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def override_value(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def dirname(overrides: list[str]) -> str:
    """A job's directory: its sampled settings (and seed), sorted, as Hydra's override_dirname
    spells them, with any character but letters, digits and `_.,=+-` made `_`."""
    name = re.sub(r"[^\w.,=+-]", "_", ",".join(sorted(overrides)))
    if len(name) > MAX_DIRNAME:
        name = name[:MAX_DIRNAME - 17] + "-" + hashlib.sha1(name.encode()).hexdigest()[:16]
    return name


def value_at(result: RunResult | None, budget: int) -> float | None:
    """The best validation accuracy a record had reached at `budget` steps."""
    if result is None:
        return None
    if result.steps == budget:
        return result.best_val_accuracy
    return evaluation_summary([e for e in result.evaluations if e[0] <= budget]
                              )["best_val_accuracy"]


def check_settings(s: dict[str, Any], config: DictConfig) -> None:
    """Each setting of the sweeper within what it can use, else one line naming it."""
    for key, ok, allowed in (
        ("direction", s["direction"] in ("maximize", "minimize"), "maximize, minimize"),
        ("n_trials", isinstance(s["n_trials"], int) and s["n_trials"] >= 1, "an integer >= 1"),
        ("n_jobs", isinstance(s["n_jobs"], int) and s["n_jobs"] >= 1, "an integer >= 1"),
        ("pruner", s["pruner"] in PRUNERS, ", ".join(PRUNERS)),
        ("eta", isinstance(s["eta"], int) and s["eta"] >= 2, "an integer >= 2"),
        ("min_steps", s["min_steps"] is None or isinstance(s["min_steps"], int)
         and s["min_steps"] >= 1, "an integer >= 1, or null"),
        ("max_failure_rate", 0 <= s["max_failure_rate"] <= 1, "a number from 0 to 1"),
        ("sampler", not isinstance(s["sampler"], str) or s["sampler"] in SAMPLERS,
         ", ".join(SAMPLERS) + ", or {_target_: optuna.samplers...}"),
        ("storage", s.get("storage") is None, "null: the study lives in <sweep dir>/"
         "optuna.journal (remove the storage line of a config written for Hydra's Optuna "
         "sweeper)"),
    ):
        if not ok:
            raise invalid(f"hydra.sweeper.{key}", s.get(key), f"must be {allowed}"
                          if allowed.startswith(("an ", "a ")) else f"allowed: {allowed}")
    if not config.dataset.val_size:
        raise invalid("dataset.val_size", config.dataset.val_size, "the search maximises the "
                      "best validation accuracy: hold some out (> 0)")


def make_sampler(s: dict[str, Any], space: dict[str, BaseDistribution], offset: int
                 ) -> optuna.samplers.BaseSampler:
    """The sampler, seeded with seed + the study's trials so far: a rerun continues."""
    seed = None if s["seed"] is None else s["seed"] + offset
    if not isinstance(s["sampler"], str):
        from hydra.utils import instantiate

        return instantiate(OmegaConf.create(s["sampler"]))
    if s["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s["sampler"] == "grid":
        if not all(isinstance(d, CategoricalDistribution) for d in space.values()):
            raise ConfigError("hydra.sweeper.sampler='grid' is invalid: the grid sampler "
                              "needs every parameter as a choice(...) or list")
        return optuna.samplers.GridSampler({k: list(d.choices) for k, d in space.items()},
                                           seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s["n_startup_trials"],
                                      multivariate=s["multivariate"], group=s["multivariate"])


def first_budget(s: dict[str, Any], final: int) -> int:
    return s["min_steps"] or max(1, final // s["eta"] ** 2)


def make_pruner(s: dict[str, Any], final: int) -> optuna.pruners.BasePruner:
    first = first_budget(s, final)
    return {
        "none": lambda: optuna.pruners.NopPruner(),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=s["n_startup_trials"]),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=first, reduction_factor=s["eta"]),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource=final, reduction_factor=s["eta"]),
    }[s["pruner"]]()


class OptunaSweeperImpl:
    """The sweeper's logic; the basic sweeper (made at setup) parses and holds the launcher."""

    def __init__(self, **settings: Any) -> None:
        self.s = settings

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        self.basic = BasicSweeper(max_batch_size=None, params=self.s.get("params"))
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config, self.launcher = config, self.basic.launcher

    def sweep(self, arguments: list[str]) -> list[Any]:
        check_settings(self.s, self.config)
        space, fixed = search_space([*self.basic._parse_config(), *arguments])
        final = int(self.config.train.steps)
        ladder = budgets(first_budget(self.s, final), self.s["eta"], final) \
            if self.s["pruner"] != "none" else [final]
        with owned(self.config.hydra.sweep.dir) as folder:
            refuse_an_old_study(folder.path)
            save_multirun(folder, self.config)
            journal = FolderJournal(folder)
            try:
                runner = TrialRunner(self.launcher, folder.path, fixed, ladder, self.s["seeds"])
                return self._optimize(journal, space, runner)
            finally:
                journal.close()

    def _optimize(self, journal: FolderJournal, space: dict[str, BaseDistribution],
                  runner: TrialRunner) -> list[Any]:
        study = optuna.create_study(
            study_name=self.s["study_name"] or runner.sweep_dir.name,
            storage=optuna.storages.JournalStorage(journal), direction=self.s["direction"],
            pruner=make_pruner(self.s, runner.ladder[-1]), load_if_exists=True)
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL)
            print(f"[optuna] trial #{stale.number} was left running by a sweep that was "
                  "stopped: told FAIL", flush=True)
        study.sampler = make_sampler(self.s, space, len(study.trials))
        trained = failed = 0
        for start in range(0, self.s["n_trials"], self.s["n_jobs"]):
            trials = [study.ask(space) for _ in range(min(self.s["n_jobs"],
                                                          self.s["n_trials"] - start))]
            steps, batch_failed = runner.run(study, trials)
            trained, failed = trained + steps, failed + batch_failed
            if failed > self.s["max_failure_rate"] * (start + len(trials)):
                print(f"[optuna] {failed} trial(s) failed, more than max_failure_rate="
                      f"{self.s['max_failure_rate']}: stopping the study", flush=True)
                break
        self._summary(study, trained, runner.ladder[-1])
        return runner.returns

    def _summary(self, study: optuna.Study, trained: int, final: int) -> None:
        jobs = self.s["n_trials"] * len(self.s["seeds"] or [None])
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = "none completed" if not complete else (
            f"best trial #{study.best_trial.number}: {study.best_value:.4f} with "
            + " ".join(f"{k}={override_value(v)}" for k, v in study.best_params.items()))
        print(f"[optuna] {len(study.trials)} trials in the study; this command trained "
              f"{trained} steps, {trained / (jobs * final):.1%} of {jobs} job(s) x {final}; "
              f"{best}", flush=True)


class TrialRunner:
    """Trains a batch of trials through the launcher, budget after budget, pruning on the way."""

    def __init__(self, launcher: Any, sweep_dir: Path, fixed: list[str], ladder: list[int],
                 seeds: list[int] | None) -> None:
        self.launcher, self.sweep_dir, self.fixed = launcher, sweep_dir, fixed
        self.ladder, self.seeds = ladder, seeds
        self.returns: list[Any] = []
        self.jobs_launched = 0

    def _jobs(self, trial: optuna.trial.Trial) -> list[list[str]]:
        """A trial's jobs: its settings, one job per seed (hydra.sweeper.seeds)."""
        settings = [f"{k}={override_value(v)}" for k, v in trial.params.items()]
        return [settings] if not self.seeds else [[*settings, f"seed={s}"] for s in self.seeds]

    def run(self, study: optuna.Study, trials: list[Any]) -> tuple[int, int]:
        """Train the trials to each budget in turn, telling the study; (steps trained, trials
        failed)."""
        alive = {trial: self._jobs(trial) for trial in trials}
        start = {trial: self._first_rung(jobs) for trial, jobs in alive.items()}
        trained = failed = 0
        for rung, budget in enumerate(self.ladder):
            values, steps = self._launch({t: j for t, j in alive.items() if start[t] <= rung},
                                         budget)
            trained += steps
            for trial in list(values):
                value = values[trial]
                if value is None:  # every seed failed: nothing to learn from
                    study.tell(trial, state=TrialState.FAIL)
                    failed += 1
                elif budget == self.ladder[-1]:
                    study.tell(trial, value)
                else:
                    trial.report(value, budget)
                    if not trial.should_prune():
                        continue
                    self._mark_pruned(alive[trial], budget)
                    study.tell(trial, state=TrialState.PRUNED)
                self._line(trial, value, budget)
                del alive[trial]
        return trained, failed

    def _first_rung(self, jobs: list[list[str]]) -> int:
        """The first budget a trial is judged at: the highest its every seed has already
        trained to (settings proposed again), so that a trial trained to the end is answered
        at the end, not pruned at a budget it passed long ago."""
        reached = min(_steps(_record(self.sweep_dir / dirname(job))) for job in jobs)
        return max((r for r, budget in enumerate(self.ladder) if budget <= reached), default=0)

    def _launch(self, alive: dict[Any, list[list[str]]], budget: int
                ) -> tuple[dict[Any, float | None], int]:
        """Every job of the alive trials to `budget` steps (a record that has more is asked
        for its own count: answered, not retrained); each trial's score at the budget."""
        jobs = [(trial, job) for trial, trial_jobs in alive.items() for job in trial_jobs]
        sweep_dir = self.sweep_dir
        before = {dirname(job): _record(sweep_dir / dirname(job)) for _, job in jobs}
        batch = [[*self.fixed, *job, f"train.steps={max(budget, _steps(before[dirname(job)]))}",
                  f"hydra.sweep.subdir='{dirname(job)}'"] for _, job in jobs]
        launched = list(self.launcher.launch(batch, initial_job_idx=self.jobs_launched))
        self.jobs_launched += len(batch)
        self.returns.append(launched)
        seeds: dict[Any, list[tuple[str, float | None]]] = {trial: [] for trial in alive}
        steps = 0
        for (trial, job), ret in zip(jobs, launched, strict=True):
            job_dir = sweep_dir / dirname(job)
            o = outcome(job_dir, METRIC, ret)
            after = _record(job_dir) if o["status"] != "failed" else None
            steps += max(0, (after.steps if after else 0) - (
                before[dirname(job)].steps if before[dirname(job)] else 0))
            status = Status.COMPLETED.value if o["status"] == Status.PRUNED.value else o["status"]
            seeds[trial].append((status, value_at(after, budget)))
        # A trial whose every seed failed (refused, or another configuration's record) taught
        # nothing: None (FAIL). One that diverged scores 0, so that TPE learns to avoid it.
        values = {trial: None if all(st in ("failed", "missing") for st, _ in trial_seeds)
                  else score(trial_seeds).mean for trial, trial_seeds in seeds.items()}
        return values, steps

    def _mark_pruned(self, jobs: list[list[str]], budget: int) -> None:
        """The records of a pruned trial's jobs say so (the ones it trained to this budget)."""
        for job in jobs:
            with Folder(self.sweep_dir / dirname(job)) as folder, DirLock(folder):
                result = _record(folder.path)
                if result is not None and result.status is Status.COMPLETED \
                        and result.steps == budget:
                    result.status = Status.PRUNED
                    result.write(folder)

    def _line(self, trial: Any, value: float | None, budget: int) -> None:
        params = " ".join(f"{k}={override_value(v)}" for k, v in trial.params.items())
        pruned = "" if budget == self.ladder[-1] else f", pruned at {budget} steps"
        what = "failed: every seed failed" if value is None else f"{METRIC} {value:.4f}{pruned}"
        print(f"[optuna] trial #{trial.number} {params}: {what}", flush=True)


def _record(job_dir: Path) -> RunResult | None:
    try:
        return RunResult.read(job_dir)
    except Exception:  # noqa: BLE001 - a damaged record: the job's outcome says so
        return None


def _steps(result: RunResult | None) -> int:
    """The steps a finished record already has (0 for none, or for one still to resume)."""
    finished = result is not None and result.status in (Status.COMPLETED, Status.PRUNED)
    return result.steps if finished else 0
