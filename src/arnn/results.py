"""results.json: the one schema the runner writes and the sweep collector reads."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATUSES = ("running", "completed", "diverged", "failed")
# A run in one of these states is not trained again when started in the same directory.
FINISHED = ("completed", "diverged")
RESULTS_FILE = "results.json"


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
    last_finite_loss: float | None = None
    error: str | None = None
    evaluations: list[list[float]] = field(default_factory=list)  # [step, test accuracy]
    config: dict[str, Any] = field(default_factory=dict)

    def write(self, run_dir: Path) -> Path:
        """Write atomically (temporary file + rename): readers never see half a file."""
        path = run_dir / RESULTS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, run_dir: Path) -> RunResult | None:
        """The run's results, or None when it has none (yet) or they cannot be parsed."""
        path = Path(run_dir) / RESULTS_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None
