"""A run's training state and its checkpoint pair: what checkpoints/last.pt and best.pt hold,
how large they may be, and what is checked when they are read.

The keys are the fields of `TrainingState`, listed once: the loop saves one, and a checkpoint is
read back into one only when every field has the type and range a run writes. What a run reports
(best and last accuracies, the best validation step) is not stored beside it: it derives from
`evaluations` (`arnn.results.evaluation_summary`). `best_model` holds the weights at the best
validation accuracy, so that checkpoints/best.pt can always be written again from last.pt: the
two never describe different timelines.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from arnn import host
from arnn.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT,
    UNTOUCHED,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    max_checkpoint_bytes,
    restore_rng,
    save_atomic,
)
from arnn.identity import check_same_run
from arnn.results import evaluation_summary
from arnn.storage import Folder
from arnn.window import StepWindow

log = logging.getLogger("arnn")

VERSION = 3  # 1: before validation splits; 2: with a separate best/last/validation record
# Keys of versions 1 and 2 that are derived from `evaluations` now: read and ignored.
DERIVED_KEYS = ("best", "last", "validation")
MAX_HOSTS = 64  # distinct sessions' descriptions kept


@dataclass
class TrainingState:
    fingerprint: dict[str, Any]  # the run's identity (arnn.identity)
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    sampler: dict[str, Any]
    task: dict[str, Any]
    rng: dict[str, Any]
    evaluations: list[list[float]]  # [step, test accuracy(, validation accuracy)]
    wall_time_s: float
    window: tuple[torch.Tensor, int] | list[Any]  # the logging window's rows and examples
    last_finite_loss: float | None = None
    best_model: dict[str, torch.Tensor] | None = None  # weights at the best validation accuracy
    host: dict[str, Any] | None = None  # what computed it (arnn.host): threads, backend, torch
    hosts: list[dict[str, Any]] | None = None  # every session's, when they differed
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, path: Path, state: dict[str, Any], max_step: int) -> TrainingState:
        """The state a checkpoint holds; CheckpointError naming `path` when a value is not one
        a run writes (tensors are checked by their owners when restored)."""
        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"checkpoint {path} is refused ({what}); {UNTOUCHED}")

        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        step = values.get("step")
        if not (isinstance(step, int) and not isinstance(step, bool) and 0 <= step <= max_step):
            raise bad(f"step {step!r} is not an integer in 0..train.steps={max_step}")
        for key, kind in (("model", dict), ("optimizer", dict), ("sampler", dict),
                          ("task", dict), ("rng", dict), ("fingerprint", dict),
                          ("evaluations", list), ("window", tuple | list),
                          ("best_model", dict | type(None)), ("host", dict | type(None))):
            if not isinstance(values.get(key), kind):
                raise bad(f"{key} is {type(values.get(key)).__name__}")
        hosts = values.get("hosts") or []
        if not (isinstance(hosts, list) and len(hosts) <= MAX_HOSTS and all(
                host.is_description(h) for h in [values.get("host") or {}, *hosts])):
            raise bad("host is not a description arnn.host makes")
        if values.get("last_finite_loss") is not None and not _number(values["last_finite_loss"]):
            raise bad(f"last_finite_loss {values['last_finite_loss']!r} is not a finite number")
        if not _number(values.get("wall_time_s"), 0):
            raise bad(f"wall_time_s {values.get('wall_time_s')!r} is not a number >= 0")
        evaluations = values["evaluations"]
        if len(evaluations) > step + 1 or not all(
            isinstance(e, list) and len(e) in (2, 3) and _number(e[0], 0, step)
            and all(_number(a, 0, 1) for a in e[1:]) for e in evaluations
        ):
            raise bad("evaluations are not [step, test accuracy(, val accuracy)] of this run")
        values["version"] = VERSION
        return cls(**values)

    def restore(self, path: Path, parts: Any, log_every: int) -> StepWindow:
        """Weights, optimizer, sampler, task and RNG states into `parts` (an arnn.build
        RunParts); returns the logging window.
        CheckpointError naming `path` when any does not fit this run."""
        check_compatible(path, self.model, parts.model)
        if self.best_model is not None:
            check_compatible(path, self.best_model, parts.model)
        configured = [{k: v for k, v in g.items() if k != "params"}
                       for g in parts.optimizer.param_groups]
        try:
            parts.model.load_state_dict(self.model)
            parts.optimizer.load_state_dict(self.optimizer)
            _check_optimizer_state(parts.optimizer, configured)
            parts.sampler.load_state_dict(self.sampler)
            parts.task.load_state_dict(self.task)
            restore_rng(self.rng)
            return StepWindow.restored(log_every, parts.device, self.step, *self.window)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, OverflowError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this run "
                                  f"({type(e).__name__}: {e}); {UNTOUCHED}") from None


def _check_optimizer_state(optimizer: torch.optim.Optimizer,
                           configured: list[dict[str, Any]]) -> None:
    """The optimizer's settings are the configuration's (torch's load_state_dict takes a
    file's lr, momentum or `maximize` over them: the run would train by the file while its
    record says the configuration), and every per-weight buffer (momentum, Adagrad's sum,
    Adam's moments) has its weight's shape and dtype (load_state_dict accepts any, and training
    would fail or go wrong later)."""
    for group, wanted in zip(optimizer.param_groups, configured, strict=True):
        for key in wanted.keys() & group.keys():
            if _plain(group[key]) != _plain(wanted[key]):
                raise ValueError(f"its optimizer has {key}={group[key]!r:.40}, the configuration "
                                 f"{wanted[key]!r:.40}")
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if value is None or (name == "step" and isinstance(value, torch.Tensor)
                                     and value.ndim == 0):
                    continue  # no buffer yet; the step counter
                if not isinstance(value, torch.Tensor) or value.shape != param.shape or (
                    value.dtype != param.dtype
                ):
                    raise ValueError(f"optimizer state {name} does not fit a weight of shape "
                                     f"{tuple(param.shape)}")


def _plain(value: Any) -> Any:
    """A setting compared by value (tuples and lists alike)."""
    return list(value) if isinstance(value, tuple) else value


def _number(value: Any, low: float = -1e300, high: float = 1e300) -> bool:
    """A finite number in [low, high] (an integer too large for a float is compared as one)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value)) and low <= value <= high)


class Checkpoints:
    """A run directory's checkpoint pair: last.pt (the whole state) and best.pt (the model at
    the best validation accuracy, with that step and its accuracies), both at most `max_bytes`
    (what the run's model can make). best.pt is written only together with last.pt, from the
    state last.pt holds: the two never describe different timelines."""

    def __init__(self, folder: Folder, model: torch.nn.Module, num_train: int,
                 steps: int) -> None:
        self.folder = folder
        self.max_bytes = max_checkpoint_bytes(model, num_train, steps)
        self.best_saved: int | None = None  # the step best.pt holds, once known

    def load(self, identity: dict[str, Any], max_step: int) -> TrainingState:
        """last.pt's state, refused (CheckpointError naming it) when it is another run's."""
        path = self.folder.path / CHECKPOINT
        raw = load_checkpoint(path, self.max_bytes)
        check_same_run(path, raw.get("fingerprint", {}), identity)
        return TrainingState.from_dict(path, raw, max_step)

    def save(self, state: TrainingState) -> None:
        save_atomic(state.to_dict(), self.folder, CHECKPOINT)
        best = evaluation_summary(state.evaluations)
        if state.best_model is not None and best["best_val_step"] != self.best_saved:
            save_atomic({"version": state.version, "fingerprint": state.fingerprint,
                         "step": best["best_val_step"], "model": state.best_model,
                         "val_accuracy": best["best_val_accuracy"],
                         "test_accuracy": best["test_accuracy_at_best_val"]},
                        self.folder, BEST_CHECKPOINT)
            self.best_saved = best["best_val_step"]

    def reconcile(self, state: TrainingState) -> None:
        """After a resume: best.pt must be the best of the evaluations kept. One written by a
        timeline the resume discarded (a kill between checkpoints) is written again from
        last.pt, or removed when last.pt (of an older version) does not hold that state."""
        best = evaluation_summary(state.evaluations)
        path = self.folder.path / BEST_CHECKPOINT
        saved = None
        if os.path.lexists(path):
            try:
                saved = load_checkpoint(path, self.max_bytes)
            except CheckpointError:
                pass
        wanted = (best["best_val_step"], best["best_val_accuracy"],
                  best["test_accuracy_at_best_val"])
        if saved is not None and (saved.get("step"), saved.get("val_accuracy"),
                                  saved.get("test_accuracy")) == wanted:
            self.best_saved = best["best_val_step"]
            return
        if best["best_val_step"] is not None and state.best_model is not None:
            self.save(state)
            log.info("%s written again for step %s (the one found was not the best of the "
                     "evaluations kept)", path, best["best_val_step"])
        elif os.path.lexists(path):
            os.unlink(BEST_CHECKPOINT.name, dir_fd=self.folder.sub(BEST_CHECKPOINT.parent.name).fd)
            log.warning("removed %s: it did not hold the best validation state of the "
                        "evaluations kept, and %s cannot give it", path, CHECKPOINT)

