"""What a sweeper does with its sweep directory, for every sweeper of arnn (grid, halving,
Optuna), and the budgets of the two that train by rungs (halving, Optuna with a pruner): it owns
the directory while it runs (one lock per sweep directory: a second sweep on it
is refused in one line, the first goes on), writes the sweep's own files through the directory
it holds (multirun.yaml, halving.json, the study's journal: never through a link), and counts a
job's record only when the launch succeeded and the record is that of the configuration launched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from arnn.errors import ConfigError, UserError, exit_with, invalid, one_line
from arnn.halving_record import FAILED, MISSING, Outcome
from arnn.identity import changed_settings, fingerprint
from arnn.inplace import SWEEP_LOCK_FILE, DirLock
from arnn.results import RunResult
from arnn.schema import composition_error
from arnn.storage import Folder

MULTIRUN_FILE = "multirun.yaml"


class ThinSweeper(Sweeper):
    """The plugin class Hydra instantiates, as hydra_optuna_sweeper shapes it: a subclass's
    `__init__` sets `self.sweeper`, the object in `_impl` that does the work; a value of the
    wrong type, a bad setting or record, a directory another sweep holds: one line, exit 2, as
    train.py's."""

    sweeper: Any

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self.sweeper.sweep(arguments)
        except ConfigCompositionException as e:
            exit_with(composition_error(e))
        except UserError as e:
            exit_with(e)


def earlier_budgets(min_steps: int, eta: int, final: int) -> list[int]:
    """Every min_steps * eta^k below `final`, then `final`: the budgets sweeps before
    2026-12-02 used (what a halving.json of theirs holds, continued as it began)."""
    out, budget = [], min_steps
    while budget < final:
        out.append(budget)
        budget *= eta
    return out + [final]


def budgets(min_steps: int, eta: int, final: int) -> list[int]:
    """The rungs' step counts: earlier_budgets without the rungs that `final` exceeds by less
    than sqrt(eta) (100, 300, 900 and 1000 with eta 3: stopping at 900 to train the survivors
    100 steps more saves nothing), the first excepted."""
    *rungs, last = earlier_budgets(min_steps, eta, final)
    return [b for i, b in enumerate(rungs) if i == 0 or final >= b * eta ** 0.5] + [last]


@contextmanager
def owned(sweep_dir: Path | str) -> Iterator[Folder]:
    """The sweep directory, made if missing, held open and locked for this sweep."""
    with Folder(sweep_dir) as folder, DirLock(folder, SWEEP_LOCK_FILE, "sweep directory"):
        yield folder


def save_multirun(folder: Folder, config: DictConfig) -> None:
    """Hydra's record of the sweep (<sweep dir>/multirun.yaml), written by arnn: atomically,
    through the directory held, never through a link planted in its place."""
    folder.write_atomic(MULTIRUN_FILE, OmegaConf.to_yaml(config).encode())


def outcome(job_dir: Path, metric: str, job_return: Any = None) -> Outcome:
    """A job's outcome after its launch: `failed` when the launch says it failed (refused, or
    another process held its directory) or when its results.json is not the record of the
    configuration launched; `missing` when it has none."""
    try:
        result = RunResult.read(job_dir)
        problem = None if job_return is None else launch_problem(job_return, result)
    except UserError as e:
        result, problem = None, one_line(e)
    if problem is not None:
        return Outcome(FAILED, error=problem)
    if result is None:
        return Outcome(MISSING)
    return Outcome(result.status.value, getattr(result, metric), result.steps)


def launch_problem(job_return: Any, result: RunResult | None) -> str | None:
    """Why a launched job's record does not count for the sweep, or None: the launch failed,
    or the record belongs to another configuration than the one launched."""
    from hydra.core.utils import JobStatus

    if job_return.status is not JobStatus.COMPLETED:
        return f"the job failed: {one_line(job_return._return_value)}"
    if result is not None:
        diff = changed_settings(result.config, fingerprint(job_return.cfg))
        if diff:
            return f"its results.json is another configuration's ({'; '.join(diff[:3])})"
    return None


class _LaunchLines(logging.Filter):
    """Drops the launchers' own `Launching N jobs` and `#i : overrides` lines: a sweeper that
    trains by rungs says which of its jobs it launches, in its own numbering."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("Launching") or message.lstrip().startswith("#"))


LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher",
                    "hydra_plugins.hydra_joblib_launcher._core",
                    "hydra_plugins.hydra_submitit_launcher.submitit_launcher")


class RungSweeper:
    """What arnn's sweepers that train by rungs (halving, Optuna with a pruner) share: Hydra's
    basic sweeper made at setup (it parses the grid and holds the launcher; Hydra's plugin
    scan may load a sweeper's module anew), the refusal to sweep train.steps (each rung's
    budget) or the job directories, the final budget, and launching jobs to a budget in
    their own directories and reading their outcomes."""

    who = "the sweeper"  # in messages: "the halving sweeper sets train.steps itself"
    tag = "sweep"  # its log lines' prefix

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        self.basic = BasicSweeper(max_batch_size=None, params=getattr(self, "params", None))
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config, self.launcher = config, self.basic.launcher

    def overrides(self, arguments: list[str]) -> list[Override]:
        """The sweep's overrides (its params, then the command line's), train.steps and the
        job directories refused as sweep axes."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.basic.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self.basic._parse_config(), *arguments])
        for override in overrides:
            key = override.get_key_element()
            if key in ("train.steps", "hydra.sweep.subdir") and override.is_sweep_override():
                raise ConfigError(f"{override.input_line} is invalid: {self.who} sets {key} "
                                  "itself (train.steps is the last rung's budget: give one "
                                  "value)")
        if self.extends_runs:
            self._refuse_a_schedule(overrides)
        return overrides

    @property
    def extends_runs(self) -> bool:
        """Whether a job trained to one rung's budget is extended to the next one's."""
        return True

    def _refuse_a_schedule(self, overrides: list[Override]) -> None:
        """A learning-rate schedule ends at train.steps: a run trained under one is not
        extended (arnn.identity), so rungs that extend runs are refused one before any job."""
        values = [self.config.train.lr_schedule]
        for o in overrides:
            if o.get_key_element() == "train.lr_schedule":
                values += (list(o.sweep_string_iterator()) if o.is_sweep_override()
                           else [o.value()])
        for value in values:
            if value != "constant":
                raise invalid("train.lr_schedule", value, f"{self.who} extends each run from "
                              "rung to rung, and a schedule ends at train.steps: sweep at "
                              "constant (or without pruning, hydra.sweeper.pruner=none)")

    def final_steps(self) -> int:
        steps = self.config.train.steps
        if not isinstance(steps, int) or steps < 1:
            raise invalid("train.steps", steps, "the last rung's budget must be an integer >= 1")
        return steps

    def launch(self, sweep_dir: Path, jobs: dict[str, list[str]], budget: int, metric: str,
               rung: str) -> tuple[dict[str, Outcome], list[Any]]:
        """Each job (directory name -> overrides) trained to `budget` steps in its directory
        (a record with more steps is asked for its own count: answered, not retrained), as one
        batch of the launcher; their outcomes, and the launcher's returns."""
        if not jobs:
            return {}, []
        batch = []
        for name, job in jobs.items():
            print(f"[{self.tag}] {rung}: job {name} to {budget} steps: {' '.join(job)}",
                  flush=True)
            batch.append([*job, f"train.steps={budget}", f"hydra.sweep.subdir='{name}'"])
        quiet = _LaunchLines()
        for name in LAUNCHER_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        try:
            returns = list(self.launcher.launch(batch, initial_job_idx=0))
        finally:
            for name in LAUNCHER_LOGGERS:
                logging.getLogger(name).removeFilter(quiet)
        outcomes = {name: outcome(sweep_dir / name, metric, ret)
                    for name, ret in zip(jobs, returns, strict=True)}
        return outcomes, returns
