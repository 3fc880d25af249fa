"""The records a run and a sweep leave behind, with one owner each: `results.json` (RunResult,
its statuses) and a halving sweep's `halving.json`. The runner writes them and the collector and
the sweeper read them through this module only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from arnn.errors import UserError
from arnn.storage import write_atomic

RESULTS_FILE = "results.json"
HALVING_FILE = "halving.json"
MAX_RECORD_BYTES = 64 << 20


class Status(str, Enum):
    """A run's state; written to JSON as its value."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    REQUEUED = "requeued"  # stopped by SLURM's preemption / time-limit signal, checkpointed
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM outside SLURM, checkpointed

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """A finished run is not trained again when started in the same directory."""
        return self in (Status.COMPLETED, Status.DIVERGED)


class ResultsError(UserError):
    """A results.json or halving.json that exists but cannot be used; the message names it."""


@dataclass
class RunResult:
    status: Status
    model: str
    dataset: str
    optimizer: str
    test_accuracy: float | None = None  # at the last evaluation, 0..1
    best_test_accuracy: float | None = None  # best over all evaluations, 0..1
    params: int | None = None  # trainable parameters
    steps: int = 0  # iterations done
    wall_time_s: float = 0.0  # training time summed over resumed sessions
    hidden_size: int | None = None
    device: str | None = None
    backend: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    num_train: int | None = None
    num_test: int | None = None
    diverged_step: int | None = None
    divergence: str | None = None  # why the run is `diverged` (not finite, or train.max_loss)
    last_finite_loss: float | None = None
    error: str | None = None
    requeues: int = 0  # times SLURM's signal stopped the run for a requeue
    euler_rho: float | None = None  # at the start: max_i |1 + eps mu_i(A)| (arnn.stability)
    log10_growth: float | None = None  # at the start: T log10(euler_rho), i.e. log10(rho^T)
    evaluations: list[list[float]] = field(default_factory=list)  # [step, test accuracy]
    config: dict[str, Any] = field(default_factory=dict)  # the run's identity (arnn.identity)

    @classmethod
    def failed(cls, config: dict[str, Any], error: BaseException) -> RunResult:
        """The record of a run that failed before it had any state of its own."""
        def name(group: str) -> str:
            node = config.get(group)
            return str(node.get("name")) if isinstance(node, dict) else "?"

        return cls(Status.FAILED, name("model"), name("dataset"), name("optimizer"),
                   error=f"{type(error).__name__}: {error}", config=config)

    def write(self, run_dir: Path) -> Path:
        """Write atomically (temporary file + rename): readers never see half a file."""
        path = run_dir / RESULTS_FILE
        write_atomic(path, (json.dumps(asdict(self), indent=2) + "\n").encode())
        return path

    @classmethod
    def read(cls, run_dir: Path) -> RunResult | None:
        """The run's results, or None when it has none yet. A file that exists but is not a
        results.json of this schema raises ResultsError naming it (results are written
        atomically, so such a file was damaged or put there by hand)."""
        path = Path(run_dir) / RESULTS_FILE
        data = _read_object(path, "a results.json")
        if data is None:
            return None
        try:
            status = Status(data.get("status"))
        except ValueError:
            raise ResultsError(f"{path}: status {data.get('status')!r} is invalid: allowed: "
                               + ", ".join(s.value for s in Status)) from None
        for name, kind in (("config", dict), ("evaluations", list), ("steps", int)):
            if name in data and not isinstance(data[name], kind):
                raise ResultsError(f"{path}: {name} is {type(data[name]).__name__}, "
                                   f"expected {kind.__name__}")
        missing = [k for k in ("model", "dataset", "optimizer") if k not in data]
        if missing:
            raise ResultsError(f"{path}: lacks {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "status": status})


def _read_object(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON object in `path`, None when there is no file; ResultsError when it cannot be
    read or is not an object (`what` names the record in the message)."""
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_RECORD_BYTES).decode())
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else f"not JSON: {e}"
        raise ResultsError(f"{path} cannot be read ({reason}); move it away to go on") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not {what} (a JSON object was expected)")
    return data


# halving.json: {"version", "metric", "eta", "min_steps", "budgets": [int], "configs":
# [[override, ...]], "rungs": [{"budget", "jobs": [int], "done", "outcomes": {job: {status,
# metric, steps}}, "promoted": [int]}]}
_HALVING_TYPES = {"metric": str, "eta": int, "budgets": list, "configs": list, "rungs": list}


def read_halving(sweep_dir: Path) -> dict[str, Any] | None:
    """A halving sweep's record, None for other sweeps; ResultsError when it is damaged."""
    path = Path(sweep_dir) / HALVING_FILE
    record = _read_object(path, "a halving sweep's record")
    if record is None:
        return None
    for key, kind in _HALVING_TYPES.items():
        if not isinstance(record.get(key), kind):
            raise ResultsError(f"{path}: {key} is {type(record.get(key)).__name__}, "
                               f"expected {kind.__name__}")
    budgets = record["budgets"]
    if not budgets or not all(isinstance(b, int) and b >= 1 for b in budgets):
        raise ResultsError(f"{path}: budgets {budgets!r} must be integers >= 1")
    for rung in record["rungs"]:
        if not (isinstance(rung, dict) and isinstance(rung.get("jobs"), list)
                and isinstance(rung.get("outcomes", {}), dict)):
            raise ResultsError(f"{path}: a rung is not a record of jobs and outcomes")
    return record


def write_halving(sweep_dir: Path, record: dict[str, Any]) -> None:
    write_atomic(Path(sweep_dir) / HALVING_FILE, (json.dumps(record, indent=1) + "\n").encode())


def steps_trained(record: dict[str, Any]) -> int:
    """Steps trained by all jobs of a halving sweep: each job's deepest recorded step count."""
    steps: dict[str, int] = {}
    for rung in record["rungs"]:
        for job, o in rung.get("outcomes", {}).items():
            steps[job] = max(steps.get(job, 0), o["steps"])
    return sum(steps.values())
