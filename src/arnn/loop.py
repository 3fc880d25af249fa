"""The training loop: optimiser steps, the statistics window, evaluation.

`Loop.fit` trains up to train.steps; it logs, checks for divergence, evaluates and checkpoints
at their intervals, and stops at the first step boundary after `stop()` says so. Its state is a
`TrainingState` (arnn.state); what it reports derives from the evaluations. What an evaluation
draws besides the accuracies (the spectrum, gradient flow) is `Diagnostics`' (arnn.diagnostics);
writing checkpoints is `Checkpoints`' (arnn.state); the record is `Recorder`'s (arnn.record).
Hooks, called after every step with the loop, are how tests inject faults and signals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from arnn.build import RunParts
from arnn.checkpoint import capture_rng
from arnn.data import SequenceTask
from arnn.host import describe, with_current
from arnn.models import SequenceClassifier
from arnn.monitor import Monitor
from arnn.optimizers import LR_SCHEDULES
from arnn.results import Status, evaluation_summary, stalled
from arnn.spec import RunSpec
from arnn.state import TrainingState
from arnn.window import StepWindow

Hook = Callable[["Loop"], None]
log = logging.getLogger("arnn")


class Saver(Protocol):
    def save(self, state: TrainingState) -> None: ...


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


class Loop:
    """A run's training state and the steps that change it."""

    def __init__(self, parts: RunParts, spec: RunSpec, hooks: Iterable[Hook] = (),
                 diagnostics: Callable[[Monitor, int], None] | None = None) -> None:
        self.parts, self.spec, self.hooks, self.diagnostics = parts, spec, list(hooks), diagnostics
        self.model, self.optimizer, self.task = parts.model, parts.optimizer, parts.task
        self.step, self.evaluations = 0, []
        self.diverged: tuple[int, str] | None = None  # (step, reason)
        self.last_finite_loss: float | None = None
        self.best_model: dict[str, torch.Tensor] | None = None
        self.wall_time_s, self._session_start = 0.0, time.perf_counter()
        self.steps, self.log_every, self.eval_every, self.checkpoint_every = (
            int(spec.train[k]) for k in ("steps", "log_every", "eval_every", "checkpoint_every"))
        self.grad_clip, self.max_loss = spec.train.grad_clip, spec.train.max_loss
        self.lr, self.lr_factor = spec.cfg.optimizer.lr, LR_SCHEDULES[spec.train.lr_schedule]
        self.hosts = [describe(spec.backend)]  # what computed each session, when they differ
        self.window = StepWindow(self.log_every, parts.device, self.step)

    def elapsed(self) -> float:
        return self.wall_time_s + time.perf_counter() - self._session_start

    def state(self) -> TrainingState:
        return TrainingState(
            fingerprint=self.spec.identity, step=self.step, model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(), sampler=self.parts.sampler.state_dict(),
            task=self.task.state_dict(), rng=capture_rng(), evaluations=self.evaluations,
            wall_time_s=self.elapsed(), last_finite_loss=self.last_finite_loss,
            window=(self.window.rows(self.step), self.window.examples), best_model=self.best_model,
            host=self.hosts[-1], hosts=self.hosts)

    def restore(self, path: Path, state: TrainingState) -> None:
        """Continue from a checkpoint's state; CheckpointError naming the file when it does
        not fit this run (the run is then refused, nothing written)."""
        self.window = state.restore(path, self.parts, self.log_every)
        self.step, self.evaluations = state.step, state.evaluations
        self.best_model, self.last_finite_loss = state.best_model, state.last_finite_loss
        self.wall_time_s, self._session_start = state.wall_time_s, time.perf_counter()
        self.hosts = with_current(state.hosts or [h for h in [state.host] if h], self.hosts[-1])

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns the (detached) loss without reading it back."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _gradient_norm(self.model, self.grad_clip)
        _step_at(self.optimizer, self.lr * self.lr_factor(self.step, self.steps), self.lr)
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == y).sum(dtype=torch.float32)
            self.step += 1
            self.window.record(self.step, loss.detach(), grad_norm, correct, len(y))
        return loss.detach()

    def check_divergence(self) -> bool:
        """Whether the window diverged (reads it back: at log, evaluation, checkpoint steps)."""
        last_finite, self.diverged = self.window.divergence(self.step, self.max_loss)
        if last_finite is not None:
            self.last_finite_loss = last_finite
        return self.diverged is not None

    def log_window(self, monitor: Monitor) -> None:
        stats = self.window.stats(self.step, self.lr * self.lr_factor(self.step - 1, self.steps))
        if stats is not None:
            monitor.window(self.step, self.steps, stats)
            self.window = StepWindow(self.log_every, self.parts.device, self.step)

    def run_evaluation(self, monitor: Monitor) -> None:
        """Test (and validation) accuracy now; a new best validation accuracy keeps the
        weights for best.pt, written with the next checkpoint."""
        batch = self.spec.train.eval_batch_size
        accuracy, loss = evaluate(self.model, self.task, batch)
        scalars = {"test/accuracy": accuracy, "test/loss": loss}
        if self.task.num_val:
            val, val_loss = evaluate(self.model, self.task, batch, "val")
            scalars |= {"val/accuracy": val, "val/loss": val_loss}
            self.evaluations.append([self.step, accuracy, val])
            if evaluation_summary(self.evaluations)["best_val_step"] == self.step:
                self.best_model = {k: v.detach().clone()
                                   for k, v in self.model.state_dict().items()}
        else:
            self.evaluations.append([self.step, accuracy])
        monitor.scalars(self.step, scalars)
        if self.diagnostics is not None:
            self.diagnostics(monitor, self.step)
        monitor.progress(self.step, _evaluation_line(self.step, self.evaluations, loss))

    def fit(self, monitor: Monitor, checkpoints: Saver,
            stop: Callable[[], bool] = lambda: False) -> Status:
        """Train up to train.steps: COMPLETED (or before, at an evaluation train.patience stops
        at), DIVERGED (the last checkpoint keeps the last finite state) or INTERRUPTED (`stop()`
        said so). A run that stops before train.steps is checkpointed at that step."""
        if self.step >= self.steps:  # train.steps=0, or killed after the final checkpoint
            if not self.evaluations:
                self.run_evaluation(monitor)
                checkpoints.save(self.state())
            return Status.COMPLETED
        while self.step < self.steps:
            self.train_step(*self.task.train_batch(self.parts.sampler.next()))
            for hook in self.hooks:
                hook(self)
            step, at_end = self.step, self.step == self.steps
            do_log = at_end or step % self.log_every == 0
            do_eval = at_end or step % self.eval_every == 0
            stopping = not at_end and stop()
            do_ckpt = at_end or stopping or step % self.checkpoint_every == 0
            if (do_log or do_eval or do_ckpt) and self.check_divergence():
                self.log_window(monitor)
                return Status.DIVERGED
            if do_log:
                self.log_window(monitor)
            if do_eval:
                self.run_evaluation(monitor)
            early = do_eval and not at_end and stalled(self.evaluations, self.spec.train.patience)
            if do_ckpt or early:
                checkpoints.save(self.state())
            monitor.advance(step)
            if stopping or early:
                return Status.COMPLETED if early else Status.INTERRUPTED
        return Status.COMPLETED


def _step_at(optimizer: torch.optim.Optimizer, lr: float, configured: float) -> None:
    """One optimizer step at `lr` (train.lr_schedule's for this step); between steps, and so in
    checkpoints, the optimizer holds the configured lr."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    for group in optimizer.param_groups:
        group["lr"] = configured


def _gradient_norm(model: SequenceClassifier, clip: float | None) -> torch.Tensor:
    """The gradients' global norm, clipped to `clip` (train.grad_clip) when given."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params])
    return torch.nn.utils.clip_grad_norm_(params, clip)


def _evaluation_line(step: int, evaluations: list[list[float]], test_loss: float) -> str:
    s = evaluation_summary(evaluations)
    val = ("" if s["val_accuracy"] is None else
           f"; val accuracy {s['val_accuracy']:.4f} (best {s['best_val_accuracy']:.4f} at step "
           f"{s['best_val_step']})")
    return (f"eval step {step}: test accuracy {s['test_accuracy']:.4f} (best "
            f"{s['best_test_accuracy']:.4f}) test loss {test_loss:.4f}{val}")
