"""What a sweeper does with its sweep directory, for every sweeper of arnn (grid, halving,
Optuna), and the budgets of the two that train by rungs (halving, Optuna with a pruner): it owns
the directory while it runs (one lock per sweep directory: a second sweep on it
is refused in one line, the first goes on), writes the sweep's own files through the directory
it holds (multirun.yaml, halving.json, the study's journal: never through a link), and counts a
job's record only when the launch succeeded and the record is that of the configuration launched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import ConfigCompositionException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from arnn.errors import UserError, exit_with, one_line
from arnn.identity import changed_settings, fingerprint
from arnn.results import RunResult
from arnn.schema import composition_error
from arnn.storage import SWEEP_LOCK_FILE, DirLock, Folder

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


def outcome(job_dir: Path, metric: str, job_return: Any = None) -> dict[str, Any]:
    """A job's status, metric and steps after its launch: `failed` when the launch says it
    failed (refused, or another process held its directory) or when its results.json is not
    the record of the configuration launched; `missing` when it has none."""
    try:
        result = RunResult.read(job_dir)
        problem = None if job_return is None else launch_problem(job_return, result)
    except UserError as e:
        result, problem = None, one_line(e)
    if problem is not None:
        return {"status": "failed", "metric": None, "steps": 0, "error": problem}
    if result is None:
        return {"status": "missing", "metric": None, "steps": 0}
    return {"status": result.status.value, "metric": getattr(result, metric),
            "steps": result.steps}


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
