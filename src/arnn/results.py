"""results.json: the one schema the runner writes and the sweep collector reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from arnn.storage import write_atomic

# requeued: stopped by SLURM's preemption / time-limit signal, checkpointed, waiting to resume;
# interrupted: stopped by Ctrl-C or SIGTERM outside SLURM, checkpointed (resume with the same run).
STATUSES = ("running", "completed", "diverged", "failed", "requeued", "interrupted")
# A run in one of these states is not trained again when started in the same directory.
FINISHED = ("completed", "diverged")
RESULTS_FILE = "results.json"


class ResultsError(RuntimeError):
    """A results.json that exists but cannot be used; the message names the file."""


@dataclass
class RunResult:
    status: str
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
    config: dict[str, Any] = field(default_factory=dict)

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
        if not path.exists():
            return None
        try:
            text = path.read_bytes()[: 64 << 20].decode()
            data = json.loads(text)
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) else f"not JSON: {e}"
            raise ResultsError(f"{path} cannot be read ({reason}); move it away to go on") from None
        if not isinstance(data, dict):
            raise ResultsError(f"{path} is not a results.json (a JSON object was expected)")
        status = data.get("status")
        if status not in STATUSES:
            raise ResultsError(
                f"{path}: status {status!r} is invalid: allowed: {', '.join(STATUSES)}"
            )
        for name, kind in (("config", dict), ("evaluations", list), ("steps", int)):
            if name in data and not isinstance(data[name], kind):
                raise ResultsError(f"{path}: {name} is {type(data[name]).__name__}, "
                                   f"expected {kind.__name__}")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name in ("model", "dataset", "optimizer")
                   and f.name not in data]
        if missing:
            raise ResultsError(f"{path}: lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})
