"""A run's training state: what checkpoints/last.pt holds and what is checked when it is read.

The keys are the fields of `TrainingState`, listed once: the loop saves one, and a checkpoint is
read back into one only when every field has the type and range a run writes. What a run reports
(best and last accuracies, the best validation step) is not stored beside it: it derives from
`evaluations` (`arnn.results.evaluation_summary`). `best_model` holds the weights at the best
validation accuracy, so that checkpoints/best.pt can always be written again from last.pt: the
two never describe different timelines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from arnn.checkpoint import UNTOUCHED, CheckpointError, check_compatible, restore_rng
from arnn.window import StepWindow

VERSION = 3  # 1: before validation splits; 2: with a separate best/last/validation record
# Keys of versions 1 and 2 that are derived from `evaluations` now: read and ignored.
DERIVED_KEYS = ("best", "last", "validation")


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
        try:
            parts.model.load_state_dict(self.model)
            parts.optimizer.load_state_dict(self.optimizer)
            _check_optimizer_state(parts.optimizer)
            parts.sampler.load_state_dict(self.sampler)
            parts.task.load_state_dict(self.task)
            restore_rng(self.rng)
            return StepWindow.restored(log_every, parts.device, self.step, *self.window)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, OverflowError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this run "
                                  f"({type(e).__name__}: {e}); {UNTOUCHED}") from None


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every per-weight buffer (momentum, Adagrad's sum, Adam's moments) has its weight's shape
    and dtype: torch's load_state_dict accepts any, and training would fail or go wrong later."""
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


def _number(value: Any, low: float = -1e300, high: float = 1e300) -> bool:
    """A finite number in [low, high] (an integer too large for a float is compared as one)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value)) and low <= value <= high)
