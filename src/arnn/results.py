"""The record a run leaves behind, `results.json` (RunResult, its statuses), with one owner: the
runner writes it, and the collector and the sweepers read it through this module only (a
halving sweep's own record: arnn.halving_record)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from arnn.bounded import load_json
from arnn.errors import UserError
from arnn.storage import Folder, write_atomic

RESULTS_FILE = "results.json"
# results.json of a 50,000-step run evaluated every 500 steps is ~5 kB; halving.json of a
# 1,000-configuration sweep ~300 kB.
MAX_RECORD_BYTES = 4 << 20
MAX_INT = 2**63 - 1  # an integer of a record beyond it (a 401-digit number) is no count of ours
MAX_STEPS = 1 << 40  # train.steps' own bound (arnn.config)
MAX_EVALUATIONS = 100_000  # a 50,000-step run evaluated at every step has 50,001


class Status(str, Enum):
    """A run's state; written to JSON as its value."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    REQUEUED = "requeued"  # stopped by SLURM's preemption / time-limit signal, checkpointed
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM outside SLURM, checkpointed
    PRUNED = "pruned"  # completed at a budget, then stopped by a search's pruner

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """A finished run is not trained again when started in the same directory (a completed
        or pruned one is extended by a larger train.steps)."""
        return self in (Status.COMPLETED, Status.DIVERGED, Status.PRUNED)

    @staticmethod
    def ended(status: str) -> bool:
        """Whether `status` (a record's, or a sweep's word such as `missing`) is a finished
        run's."""
        try:
            return Status(status).finished
        except ValueError:
            return False


ACCURACIES = ("test_accuracy", "best_test_accuracy", "val_accuracy", "best_val_accuracy",
              "test_accuracy_at_best_val")
# The metrics a sweeper or the collector can choose a configuration by, and the test accuracy
# that then reports the choice (at the same point of the run).
VALIDATION_METRICS = ("val_accuracy", "best_val_accuracy")
TEST_METRICS = ("test_accuracy", "best_test_accuracy")  # choosing by them: no test result
REPORTED = {"val_accuracy": "test_accuracy", "best_val_accuracy": "test_accuracy_at_best_val",
            "test_accuracy": "test_accuracy", "best_test_accuracy": "best_test_accuracy"}


def evaluation_summary(evaluations: list[list[float]]) -> dict[str, float | int | None]:
    """What a record says of its evaluations (`[step, test accuracy(, validation accuracy)]`),
    by RunResult's field names: the last test and validation accuracy, the best of each, the
    step of the best validation accuracy (the first of equal ones: a later tie does not
    replace it) and the test accuracy there. One derivation: the loop's record, best.pt and the
    checks of a record read back all use it."""
    tests = [e[1] for e in evaluations]
    vals = [(e[2], e[0], e[1]) for e in evaluations if len(e) > 2]
    best = None
    for val, step, test in vals:
        if best is None or val > best[0]:
            best = (val, step, test)
    return {
        "test_accuracy": tests[-1] if tests else None,
        "best_test_accuracy": max(tests) if tests else None,
        "val_accuracy": vals[-1][0] if vals else None,
        "best_val_accuracy": best[0] if best else None,
        "best_val_step": int(best[1]) if best else None,
        "test_accuracy_at_best_val": best[2] if best else None,
    }


def stalled(evaluations: list[list[float]], patience: int | None) -> str | None:
    """Why train.patience=`patience` ends a run with these evaluations: `patience` of them came
    after the best validation accuracy (the first of equal ones, as in evaluation_summary: a tie
    is no improvement). None when it goes on: no patience, no validation split, or fewer."""
    best = evaluation_summary(evaluations)["best_val_step"]
    since = 0 if best is None else sum(len(e) > 2 and e[0] > best for e in evaluations)
    if patience is None or since < patience:
        return None
    return (f"no better validation accuracy in the {since} evaluations after step {best} "
            f"(train.patience={patience})")


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
    val_accuracy: float | None = None  # validation split, last evaluation (None: no split)
    best_val_accuracy: float | None = None  # best validation accuracy over all evaluations
    best_val_step: int | None = None  # its step (checkpoints/best.pt holds that state)
    test_accuracy_at_best_val: float | None = None  # early stopping's report
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
    num_val: int | None = None
    diverged_step: int | None = None
    divergence: str | None = None  # why the run is `diverged` (not finite, or train.max_loss)
    stopped_early: str | None = None  # why a `completed` run stopped before train.steps
    last_finite_loss: float | None = None
    error: str | None = None
    requeues: int = 0  # times SLURM's signal stopped the run for a requeue
    euler_rho: float | None = None  # at the start: max_i |1 + eps mu_i(A)| (arnn.stability)
    log10_growth: float | None = None  # at the start: T log10(euler_rho), i.e. log10(rho^T)
    # what computed it: threads, backend, torch, BLAS, CPU (arnn.host)
    host: dict[str, Any] | None = None
    # every session's, in order, when a resume ran on other terms (the last is `host`)
    hosts: list[dict[str, Any]] | None = None
    # [step, test accuracy(, validation accuracy)]
    evaluations: list[list[float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the run's identity (arnn.identity)

    @classmethod
    def failed(cls, config: dict[str, Any], error: BaseException) -> RunResult:
        """The record of a run that failed before it had any state of its own."""
        def name(group: str) -> str:
            node = config.get(group)
            return str(node.get("name")) if isinstance(node, dict) else "?"

        return cls(Status.FAILED, name("model"), name("dataset"), name("optimizer"),
                   error=f"{type(error).__name__}: {error}", config=config)

    def write(self, where: Folder | Path) -> Path:
        """Into the run directory `where` (held, or a path), atomically (temporary file +
        rename): readers never see half a file."""
        data = (json.dumps(asdict(self), indent=2) + "\n").encode()
        if isinstance(where, Folder):
            return where.write_atomic(RESULTS_FILE, data)
        write_atomic(Path(where) / RESULTS_FILE, data)
        return Path(where) / RESULTS_FILE

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
            raise ResultsError(f"{path}: status {data.get('status')!r:.40} is invalid: allowed: "
                               + ", ".join(s.value for s in Status)) from None
        missing = [k for k in ("model", "dataset", "optimizer") if k not in data]
        if missing:
            raise ResultsError(f"{path}: lacks {', '.join(missing)}")
        hints = get_type_hints(cls)
        for name in data.keys() & hints.keys() - {"status"}:
            if not _fits(data[name], hints[name]) or (
                name in ACCURACIES and data[name] is not None and not 0 <= data[name] <= 1
            ) or (hints[name] is int and data[name] < 0):
                raise ResultsError(f"{path}: {name} is {data[name]!r:.60}, which a run does "
                                   f"not write ({_hint_text(hints[name])} expected)")
        result = cls(**{**{k: v for k, v in data.items() if k in hints}, "status": status})
        problem = result._inconsistency()
        if problem is not None:
            raise ResultsError(f"{path}: {problem}, which a run does not write")
        return result

    def _inconsistency(self) -> str | None:
        """What in a well-typed record no run can have written, or None: more steps than any
        run trains, evaluations beyond its steps, accuracies without evaluations or without
        examples to measure them on, or accuracies that are not those of its evaluations."""
        if self.steps > MAX_STEPS:
            return f"{self.steps} steps (a run trains at most {MAX_STEPS})"
        evaluations = self.evaluations
        if len(evaluations) > min(self.steps + 1, MAX_EVALUATIONS) or not all(
                len(e) in (2, 3) and 0 <= e[0] <= self.steps and all(0 <= a <= 1 for a in e[1:])
                for e in evaluations):
            return (f"{len(evaluations)} evaluations of {self.steps} steps (each [step <= steps, "
                    "test(, validation) accuracy])")
        recorded = {k: getattr(self, k) for k in evaluation_summary([])}
        if not evaluations and any(v is not None for v in recorded.values()):
            return "accuracies without an evaluation"
        for examples, name in ((self.num_test, "test_accuracy"), (self.num_val, "val_accuracy")):
            if examples is not None and examples < 1 and recorded[name] is not None:
                return f"{name} measured on {examples} examples"
        derived = evaluation_summary(evaluations)
        differ = [k for k, v in recorded.items() if v is not None and v != derived[k]]
        return f"{', '.join(differ)} other than its evaluations give" if differ else None


def _fits(value: Any, hint: Any) -> bool:
    """`value`, read from JSON, is of the annotated type (numbers finite, bool not a number)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (UnionType, Union):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint in (int, float):
        number = isinstance(value, int) if hint is int else isinstance(value, int | float)
        return number and not isinstance(value, bool) and (
            abs(value) <= MAX_INT if isinstance(value, int) else math.isfinite(value))
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return isinstance(value, origin or hint)


def _hint_text(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _read_object(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON object in `path`, None when there is no file; ResultsError when it cannot be
    read or is not an object (`what` names the record in the message)."""
    if not os.path.lexists(path):
        return None
    data = load_json(path, MAX_RECORD_BYTES, ResultsError)
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not {what} (a JSON object was expected)")
    return data
