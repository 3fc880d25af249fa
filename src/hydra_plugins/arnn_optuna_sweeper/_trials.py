"""Trials trained through Hydra's launcher, budget after budget, pruning on the way.

A trial's jobs (one per seed) live in directories named by their settings, so settings proposed
again are answered by their records: a job whose record already answers at a budget (trained
that far, or diverged) is not launched again, and two trials of one batch with the same settings
share their jobs (launched once). A trial's value at a budget is its grid point's score there
(arnn.points: the mean over its seeds of the best validation accuracy reached by that budget, a
seed that did not complete counting 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from arnn.halving_record import FAILED, MISSING, Outcome
from arnn.inplace import DirLock
from arnn.points import score
from arnn.results import RunResult, Status, evaluation_summary
from arnn.storage import Folder
from arnn.sweeps import RungSweeper, outcome

from ._study import METRIC, dirname, override_value


def value_at(result: RunResult | None, budget: int) -> float | None:
    """The best validation accuracy a record had reached at `budget` steps."""
    if result is None:
        return None
    if result.steps == budget:
        return result.best_val_accuracy
    return evaluation_summary([e for e in result.evaluations if e[0] <= budget]
                              )["best_val_accuracy"]


def answers(result: RunResult | None, budget: int) -> bool:
    """Whether a job's record already answers at `budget`: finished that far, or diverged."""
    return result is not None and (result.status is Status.DIVERGED or (
        result.status in (Status.COMPLETED, Status.PRUNED) and result.steps >= budget))


class TrialRunner:
    """Trains a batch of trials to each budget in turn, telling the study."""

    def __init__(self, sweeper: RungSweeper, sweep_dir: Path, fixed: list[str],
                 ladder: list[int], seeds: list[int] | None) -> None:
        self.sweeper, self.sweep_dir, self.fixed = sweeper, sweep_dir, fixed
        self.ladder, self.seeds = ladder, seeds
        self.returns: list[Any] = []

    def _jobs(self, trial: optuna.trial.Trial) -> dict[str, list[str]]:
        """A trial's jobs, directory name -> settings: one per seed (hydra.sweeper.seeds)."""
        settings = [f"{k}={override_value(v)}" for k, v in trial.params.items()]
        jobs = [settings] if not self.seeds else [[*settings, f"seed={s}"] for s in self.seeds]
        return {dirname(job): job for job in jobs}

    def run(self, study: optuna.Study, trials: list[Any]) -> tuple[int, int]:
        """Train the trials to each budget in turn, telling the study; (steps trained, trials
        failed)."""
        alive = {trial: self._jobs(trial) for trial in trials}
        start = {trial: self._first_rung(jobs) for trial, jobs in alive.items()}
        trained = failed = 0
        for rung, budget in enumerate(self.ladder):
            outcomes, steps, launched = self._launch(
                {t: j for t, j in alive.items() if start[t] <= rung}, budget)
            trained += steps
            for trial in [t for t in alive if start[t] <= rung]:
                seeds = [outcomes[name] for name in alive[trial]]
                last = budget == self.ladder[-1]
                if all(o.status in (FAILED, MISSING) for o in seeds):
                    study.tell(trial, state=TrialState.FAIL)  # nothing to learn from
                    failed += 1
                    self._line(trial, "failed: every seed failed")
                    del alive[trial]
                    continue
                value = score((o.status, o.metric) for o in seeds).mean or 0.0
                diverged = all(o.status == Status.DIVERGED.value for o in seeds)
                if last or diverged:  # a diverged trial's value is final: 0
                    study.tell(trial, value)
                    self._line(trial, "diverged (counts 0)" if diverged else f"{METRIC} "
                               f"{value:.4f}")
                    del alive[trial]
                    continue
                trial.report(value, budget)
                if trial.should_prune():
                    self._mark_pruned([n for n in alive[trial] if n in launched], budget)
                    study.tell(trial, state=TrialState.PRUNED)
                    self._line(trial, f"{METRIC} {value:.4f}, pruned at {budget} steps")
                    del alive[trial]
        return trained, failed

    def _first_rung(self, jobs: dict[str, list[str]]) -> int:
        """The first budget a trial is judged at: the highest every seed's record already
        answers (settings proposed again), so that a trial trained to the end is answered at
        the end, not pruned at a budget it passed long ago; a diverged record answers at once."""
        records = [_record(self.sweep_dir / name) for name in jobs]
        return max((r for r, budget in enumerate(self.ladder)
                    if all(answers(result, budget) for result in records)), default=0)

    def _launch(self, alive: dict[Any, dict[str, list[str]]], budget: int
                ) -> tuple[dict[str, Outcome], int, set[str]]:
        """Every job of the alive trials at `budget` steps, each once (twins share theirs):
        launched unless its record already answers; each job's outcome at the budget (its
        best validation accuracy by then), the steps trained, and the jobs launched."""
        jobs = {name: job for trial_jobs in alive.values() for name, job in trial_jobs.items()}
        before = {name: _record(self.sweep_dir / name) for name in jobs}
        todo = {name: [*self.fixed, *job] for name, job in jobs.items()
                if not answers(before[name], budget)}
        launched, returns = self.sweeper.launch(self.sweep_dir, todo, budget, METRIC,
                                                f"budget {budget}")
        self.returns.append(returns)
        out, steps = {}, 0
        for name in jobs:
            o = launched.get(name) or outcome(self.sweep_dir / name, METRIC)
            after = _record(self.sweep_dir / name) if o.status != FAILED else None
            steps += max(0, (after.steps if after else 0) - (before[name].steps
                                                               if before[name] else 0))
            # A record pruned at this budget answers as completed there.
            status = Status.COMPLETED.value if o.status == Status.PRUNED.value else o.status
            out[name] = Outcome(status, value_at(after, budget), o.steps, o.error)
        return out, steps, set(todo)

    def _mark_pruned(self, jobs: list[str], budget: int) -> None:
        """The records of a pruned trial's jobs say so: those this command trained to this
        budget (a record that answered without training keeps its status)."""
        for name in jobs:
            with Folder(self.sweep_dir / name) as folder, DirLock(folder):
                result = _record(folder.path)
                if result is not None and result.status is Status.COMPLETED \
                        and result.steps == budget:
                    result.status = Status.PRUNED
                    result.write(folder)

    def _line(self, trial: Any, what: str) -> None:
        params = " ".join(f"{k}={override_value(v)}" for k, v in trial.params.items())
        print(f"[optuna] trial #{trial.number} {params}: {what}", flush=True)


def _record(job_dir: Path) -> RunResult | None:
    try:
        return RunResult.read(job_dir)
    except Exception:  # noqa: BLE001 - a damaged record: the job's outcome says so
        return None
