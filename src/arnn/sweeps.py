"""What a sweeper does with its sweep directory, for every sweeper of arnn (grid, halving,
Optuna): it owns the directory while it runs (one lock per sweep directory: a second sweep on it
is refused in one line, the first goes on), writes the sweep's own files through the directory
it holds (multirun.yaml, halving.json, the study's journal: never through a link), and counts a
job's record only when the launch succeeded and the record is that of the configuration launched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from arnn.errors import UserError, one_line
from arnn.identity import differences, fingerprint
from arnn.results import RunResult
from arnn.storage import SWEEP_LOCK_FILE, DirLock, Folder

MULTIRUN_FILE = "multirun.yaml"


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
        diff = differences(result.config, fingerprint(job_return.cfg))
        if diff:
            return f"its results.json is another configuration's ({'; '.join(diff[:3])})"
    return None
