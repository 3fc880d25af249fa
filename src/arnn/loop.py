"""The training loop: optimiser steps, the statistics window, evaluation, checkpoint state.

`Loop.fit` trains up to train.steps; it logs, checks for divergence, evaluates and checkpoints
at their intervals, and stops at the first step boundary after `stop()` says so. Hooks, called
after every step with the loop, are how tests inject faults and signals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from arnn.build import RunParts
from arnn.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT,
    UNTOUCHED,
    CheckpointError,
    capture_rng,
    check_compatible,
    check_state,
    restore_rng,
    save_atomic,
)
from arnn.data import SequenceTask
from arnn.figures import gradient_flow, plot_gradient_flow
from arnn.models import SequenceClassifier, count_parameters
from arnn.monitor import Monitor
from arnn.results import RunResult, Status
from arnn.stability import recurrent_spectrum, stability_report

Hook = Callable[["Loop"], None]


@torch.no_grad()
def evaluate(model: SequenceClassifier, task: SequenceTask, batch_size: int,
             split: str = "test") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the whole `test` or `val` split."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=task.device)
    loss = torch.zeros((), dtype=torch.float64, device=task.device)
    count = 0
    for x, y in task.eval_batches(batch_size, split):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=-1) == y).sum()
        count += len(y)
    model.train()
    return correct.item() / count, loss.item() / count


@dataclass
class BestValidation:
    """Early stopping's record: the last validation accuracy, the best one and its step, and
    the test accuracy at that step (the number a validation-chosen model reports)."""

    last: float | None = None
    best: float | None = None
    step: int | None = None
    test: float | None = None

    def update(self, step: int, val: float, test: float) -> bool:
        """Record an evaluation; True when it is the best so far (ties keep the earlier)."""
        self.last = val
        if self.best is not None and val <= self.best:
            return False
        self.best, self.step, self.test = val, step, test
        return True

    @classmethod
    def restored(cls, state: Any, max_step: int) -> BestValidation:
        """From a checkpoint (absent in those written before validation splits existed);
        ValueError when it is not one a run writes."""
        record = cls(**(state or {}))
        numbers = (record.last, record.best, record.test)
        step_ok = record.step is None or (isinstance(record.step, int)
                                          and 0 <= record.step <= max_step)
        if not step_ok or not all(v is None or (isinstance(v, float) and 0 <= v <= 1)
                                  for v in numbers):
            raise ValueError("the validation record is not one a run writes")
        return record


class StepWindow:
    """Per-step (loss, grad norm, correct predictions) since the last log line, written into a
    device buffer: ordinary steps never wait for the device. Restored rows (a resumed window)
    leave room for a full window after them."""

    def __init__(self, size: int, device: torch.device, start_step: int,
                 rows: torch.Tensor | None = None, examples: int = 0) -> None:
        restored = 0 if rows is None else len(rows)
        self.buffer = torch.zeros(size + restored, 3, device=device)
        if rows is not None:
            self.buffer[:restored] = rows.to(device)
        self.start_step, self.examples = start_step - restored, examples
        self.started = time.perf_counter()

    @classmethod
    def restored(cls, size: int, device: torch.device, step: int, rows: Any, examples: Any
                 ) -> StepWindow:
        """The window a checkpoint saved; ValueError when it is not one a run of `size`
        writes."""
        if not (isinstance(rows, torch.Tensor) and rows.dtype == torch.float32
                and rows.ndim == 2 and rows.shape[1] == 3 and len(rows) <= min(step, size)
                and isinstance(examples, int) and examples >= 0):
            raise ValueError("the logging window is not one this run writes")
        return cls(size, device, step, rows, examples)

    def record(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor,
               correct: torch.Tensor, examples: int) -> None:
        """The row of `step` (1-based), without reading anything back."""
        torch.stack((loss, grad_norm, correct), out=self.buffer[step - 1 - self.start_step])
        self.examples += examples

    def rows(self, step: int) -> torch.Tensor:
        """The rows up to `step`, read back to the host (one synchronisation)."""
        return self.buffer[: step - self.start_step].cpu()

    def divergence(self, step: int, max_loss: float | None
                   ) -> tuple[float | None, tuple[int, str] | None]:
        """(the last finite loss, or None; (step, reason) when the window holds a loss or
        gradient norm that is not finite, or its mean loss is above `max_loss`)."""
        rows = self.rows(step)
        bad = (~torch.isfinite(rows[:, :2]).all(dim=1)).nonzero()
        good = rows[: int(bad[0]) if len(bad) else len(rows), 0]
        last_finite = float(good[-1]) if len(good) else None
        if len(bad):
            at = self.start_step + int(bad[0]) + 1
            return last_finite, (at, f"loss or gradient norm not finite at step {at}")
        if max_loss is not None and len(rows) and (mean := float(rows[:, 0].mean())) > max_loss:
            reason = (f"mean training loss {mean:.3g} over steps {self.start_step + 1}-{step} "
                      f"> train.max_loss={max_loss:g}")
            return last_finite, (step, reason)
        return last_finite, None

    def stats(self, step: int, lr: float) -> dict[str, float] | None:
        """The window's TensorBoard scalars (None when it holds no step)."""
        rows = self.rows(step)
        if len(rows) == 0:
            return None
        loss, grad_norm, correct = rows.sum(dim=0).tolist()
        return {
            "train/loss": loss / len(rows),
            "train/accuracy": correct / max(self.examples, 1),
            "train/grad_norm": grad_norm / len(rows),
            "train/lr": lr,
            "train/steps_per_s": len(rows) / max(time.perf_counter() - self.started, 1e-9),
        }


def _restore(path: Path, parts: RunParts, state: dict[str, Any], train: DictConfig
             ) -> StepWindow:
    """Weights, optimizer, sampler, task and RNG states from a checkpoint, and its logging
    window; CheckpointError when any is not one this run can have written."""
    check_state(path, state, train.steps)
    check_compatible(path, state["model"], parts.model)
    try:
        parts.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        _check_optimizer_state(parts.optimizer)
        parts.sampler.load_state_dict(state["sampler"])
        parts.task.load_state_dict(state["task"])
        restore_rng(state["rng"])
        return StepWindow.restored(train.log_every, parts.device, state["step"],
                                   *state["window"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, OverflowError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this run ({type(e).__name__}: "
                              f"{e}); {UNTOUCHED}") from None


def _restored_validation(path: Path, state: dict[str, Any]) -> BestValidation:
    try:
        return BestValidation.restored(state.get("validation"), state["step"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this run ({e}); {UNTOUCHED}"
                              ) from None


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every per-weight buffer (momentum, Adagrad's sum) has its weight's shape and dtype:
    torch's load_state_dict accepts any, and training would fail or go wrong later."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if value is None or (name == "step" and isinstance(value, torch.Tensor)
                                     and value.ndim == 0):
                    continue  # no buffer yet; Adagrad's step counter
                if not isinstance(value, torch.Tensor) or value.shape != param.shape or (
                    value.dtype != param.dtype
                ):
                    raise ValueError(f"optimizer state {name} does not fit a weight of shape "
                                     f"{tuple(param.shape)}")


def _draw_gradient_flow(loop: Loop, monitor: Monitor) -> None:
    x, y = next(loop.task.eval_batches(32))
    figure = plot_gradient_flow({loop.cfg.model.name: gradient_flow(loop.model, x, y)},
                                f"step {loop.step}")
    monitor.writer.add_figure("gradient_flow", figure, loop.step)


def _evaluation_line(loop: Loop, test_loss: float) -> str:
    v = loop.validation
    val = ("" if v.last is None else
           f"; val accuracy {v.last:.4f} (best {v.best:.4f} at step {v.step})")
    return (f"eval step {loop.step}: test accuracy {loop.last:.4f} (best {loop.best:.4f}) "
            f"test loss {test_loss:.4f}{val}")


class Loop:
    """A run's training state (what a checkpoint restores) and the steps that change it."""

    def __init__(self, parts: RunParts, cfg: DictConfig, identity: dict[str, Any],
                 requeues: int = 0, hooks: Iterable[Hook] = ()) -> None:
        self.parts, self.cfg, self.identity = parts, cfg, identity
        self.model, self.optimizer, self.task = parts.model, parts.optimizer, parts.task
        self.hooks = list(hooks)
        self.step = 0
        self.diverged: tuple[int, str] | None = None  # (step, reason)
        self.last_finite_loss: float | None = None
        self.best: float | None = None
        self.last: float | None = None
        self.evaluations: list[list[float]] = []
        self.validation = BestValidation()
        self.wall_time_s, self._session_start = 0.0, time.perf_counter()
        self.requeues = requeues
        self.stability = stability_report(self.model.cell, self.task.seq_len)
        self.window = StepWindow(cfg.train.log_every, parts.device, self.step)

    def elapsed(self) -> float:
        return self.wall_time_s + time.perf_counter() - self._session_start

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1, "fingerprint": self.identity, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "sampler": self.parts.sampler.state_dict(), "task": self.task.state_dict(),
            "rng": capture_rng(), "best": self.best, "last": self.last,
            "evaluations": self.evaluations, "wall_time_s": self.elapsed(),
            "validation": asdict(self.validation),
            "last_finite_loss": self.last_finite_loss,
            "window": (self.window.rows(self.step), self.window.examples),
        }

    def load_state_dict(self, path: Path, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state; CheckpointError naming the file when the state
        is not one this run can have written (the run is then refused, nothing written)."""
        self.window = _restore(path, self.parts, state, self.cfg.train)
        self.step, self.best, self.last = state["step"], state["best"], state["last"]
        self.evaluations = state["evaluations"]
        self.validation = _restored_validation(path, state)
        self.wall_time_s, self._session_start = state["wall_time_s"], time.perf_counter()
        self.last_finite_loss = state["last_finite_loss"]

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns the (detached) loss without reading it back."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.train.grad_clip
        if clip is None:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        self.optimizer.step()
        loss = loss.detach()
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == y).sum(dtype=torch.float32)
            self.step += 1
            self.window.record(self.step, loss, grad_norm, correct, len(y))
        return loss

    def check_divergence(self) -> bool:
        """Whether the window diverged (reads it back: at log, evaluation, checkpoint steps)."""
        last_finite, self.diverged = self.window.divergence(self.step, self.cfg.train.max_loss)
        if last_finite is not None:
            self.last_finite_loss = last_finite
        return self.diverged is not None

    def log_window(self, monitor: Monitor) -> None:
        stats = self.window.stats(self.step, self.optimizer.param_groups[0]["lr"])
        if stats is not None:
            monitor.window(self.step, self.cfg.train.steps, stats)
            self.window = StepWindow(self.cfg.train.log_every, self.parts.device, self.step)

    def run_evaluation(self, monitor: Monitor, run_dir: Path | None = None) -> None:
        """Test (and validation) accuracy now; a new best validation accuracy also writes the
        state to checkpoints/best.pt in `run_dir`."""
        accuracy, loss = evaluate(self.model, self.task, self.cfg.train.eval_batch_size)
        self.last = accuracy
        self.best = accuracy if self.best is None else max(self.best, accuracy)
        # The spectrum needs a host eigensolver (tens of ms at n=256): done at evaluations,
        # where it is small beside the evaluation itself, not at every log line.
        scalars = {"test/accuracy": accuracy, "test/loss": loss,
                   **recurrent_spectrum(self.model.cell, self.task.seq_len)}
        if self.task.num_val:
            val, val_loss = evaluate(self.model, self.task, self.cfg.train.eval_batch_size, "val")
            scalars |= {"val/accuracy": val, "val/loss": val_loss}
            self.evaluations.append([self.step, accuracy, val])
            if self.validation.update(self.step, val, accuracy) and run_dir is not None:
                save_atomic(self.state_dict(), run_dir / BEST_CHECKPOINT)
        else:
            self.evaluations.append([self.step, accuracy])
        monitor.scalars(self.step, scalars)
        if self.cfg.train.gradient_flow:
            _draw_gradient_flow(self, monitor)
        monitor.progress(self.step, _evaluation_line(self, loss))

    def fit(self, monitor: Monitor, run_dir: Path,
            stop: Callable[[], bool] = lambda: False) -> Status:
        """Train up to train.steps: COMPLETED, DIVERGED (the last checkpoint keeps the last
        finite state) or INTERRUPTED (`stop()` said so; the state at that step boundary is
        checkpointed)."""
        train = self.cfg.train
        self.task.save_artifacts(run_dir)
        if self.step >= train.steps:  # train.steps=0, or killed after the final checkpoint
            if not self.evaluations:
                self.run_evaluation(monitor, run_dir)
            return Status.COMPLETED
        while self.step < train.steps:
            self.train_step(*self.task.train_batch(self.parts.sampler.next()))
            for hook in self.hooks:
                hook(self)
            step = self.step
            at_end = step == train.steps
            do_log = at_end or step % train.log_every == 0
            do_eval = at_end or step % train.eval_every == 0
            stopping = not at_end and stop()
            do_ckpt = at_end or stopping or step % train.checkpoint_every == 0
            if (do_log or do_eval or do_ckpt) and self.check_divergence():
                self.log_window(monitor)
                return Status.DIVERGED
            if do_log:
                self.log_window(monitor)
            if do_eval:
                self.run_evaluation(monitor, run_dir)
            if do_ckpt:
                save_atomic(self.state_dict(), run_dir / CHECKPOINT)
            monitor.advance(step)
            if stopping:
                return Status.INTERRUPTED
        return Status.COMPLETED

    def result(self, status: Status, error: str | None = None) -> RunResult:
        """The run's record now (results.json)."""
        return _result(self, status, error)


def _result(loop: Loop, status: Status, error: str | None) -> RunResult:
    cfg, diverged = loop.cfg, loop.diverged if status is Status.DIVERGED else None
    return RunResult(
        status=status, model=cfg.model.name, dataset=cfg.dataset.name,
        optimizer=cfg.optimizer.name, test_accuracy=loop.last, best_test_accuracy=loop.best,
        val_accuracy=loop.validation.last, best_val_accuracy=loop.validation.best,
        best_val_step=loop.validation.step, test_accuracy_at_best_val=loop.validation.test,
        num_val=loop.task.num_val,
        params=count_parameters(loop.model), steps=loop.step,
        wall_time_s=round(loop.elapsed(), 3), hidden_size=cfg.model.hidden_size,
        device=str(loop.parts.device), backend=getattr(loop.model.cell, "backend", None),
        train_limit=cfg.dataset.train_limit, test_limit=cfg.dataset.test_limit,
        num_train=loop.task.num_train, num_test=loop.task.num_test,
        diverged_step=diverged[0] if diverged else None,
        divergence=diverged[1] if diverged else None,
        last_finite_loss=loop.last_finite_loss, error=error, requeues=loop.requeues,
        euler_rho=None if loop.stability is None else loop.stability.euler_rho,
        log10_growth=None if loop.stability is None else loop.stability.log10_growth,
        evaluations=loop.evaluations, config=loop.identity,
    )
