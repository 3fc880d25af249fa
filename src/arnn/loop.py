"""The training loop: optimiser steps, evaluation, and the checkpoints that hold its state.

`Loop.fit` trains up to train.steps; it logs, checks for divergence, evaluates and checkpoints
at their intervals, and stops at the first step boundary after `stop()` says so. Its state is a
`TrainingState` (arnn.state); what it reports derives from the evaluations. Hooks, called after
every step with the loop, are how tests inject faults and signals.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from arnn.build import RunParts
from arnn.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    save_atomic,
)
from arnn.data import SequenceTask
from arnn.figures import gradient_flow, plot_gradient_flow
from arnn.host import describe
from arnn.models import SequenceClassifier, count_parameters
from arnn.monitor import Monitor
from arnn.results import RunResult, Status, evaluation_summary
from arnn.stability import recurrent_spectrum, stability_report
from arnn.state import TrainingState
from arnn.storage import Folder
from arnn.window import StepWindow

Hook = Callable[["Loop"], None]
log = logging.getLogger("arnn")


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


class Checkpoints:
    """A run directory's last.pt (the whole state) and best.pt (the model at the best
    validation accuracy, with that step and its accuracies), written from one place: best.pt
    only together with last.pt, from the state last.pt holds."""

    def __init__(self, run_dir: Folder) -> None:
        self.run_dir = run_dir
        self.best_saved: int | None = None  # the step best.pt holds, once known

    def save(self, state: TrainingState) -> None:
        save_atomic(state.to_dict(), self.run_dir, CHECKPOINT)
        best = evaluation_summary(state.evaluations)
        if state.best_model is not None and best["best_val_step"] != self.best_saved:
            save_atomic({"version": state.version, "fingerprint": state.fingerprint,
                         "step": best["best_val_step"], "model": state.best_model,
                         "val_accuracy": best["best_val_accuracy"],
                         "test_accuracy": best["test_accuracy_at_best_val"]},
                        self.run_dir, BEST_CHECKPOINT)
            self.best_saved = best["best_val_step"]

    def reconcile(self, state: TrainingState, max_bytes: int) -> None:
        """After a resume: best.pt must be the best of the evaluations kept. One written by a
        timeline the resume discarded (a kill between checkpoints) is written again from
        last.pt, or removed when last.pt (of an older version) does not hold that state."""
        best = evaluation_summary(state.evaluations)
        path = self.run_dir.path / BEST_CHECKPOINT
        saved = None
        if os.path.lexists(path):
            try:
                saved = load_checkpoint(path, max_bytes)
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
            os.unlink(BEST_CHECKPOINT.name, dir_fd=self.run_dir.sub(BEST_CHECKPOINT.parent.name).fd)
            log.warning("removed %s: it did not hold the best validation state of the "
                        "evaluations kept, and %s cannot give it", path, CHECKPOINT)


class Loop:
    """A run's training state and the steps that change it."""

    def __init__(self, parts: RunParts, cfg: DictConfig, identity: dict[str, Any],
                 requeues: int = 0, hooks: Iterable[Hook] = ()) -> None:
        self.parts, self.cfg, self.identity = parts, cfg, identity
        self.model, self.optimizer, self.task = parts.model, parts.optimizer, parts.task
        self.backend = getattr(self.model.cell, "backend", None)  # what computes it, if chosen
        self.hooks = list(hooks)
        self.step = 0
        self.diverged: tuple[int, str] | None = None  # (step, reason)
        self.last_finite_loss: float | None = None
        self.evaluations: list[list[float]] = []
        self.best_model: dict[str, torch.Tensor] | None = None
        self.wall_time_s, self._session_start = 0.0, time.perf_counter()
        self.requeues = requeues
        self.grad_clip: float | None = cfg.train.grad_clip
        self.stability = stability_report(self.model.cell, self.task.seq_len)
        self.window = StepWindow(cfg.train.log_every, parts.device, self.step)

    def elapsed(self) -> float:
        return self.wall_time_s + time.perf_counter() - self._session_start

    def state(self) -> TrainingState:
        return TrainingState(
            fingerprint=self.identity, step=self.step, model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(), sampler=self.parts.sampler.state_dict(),
            task=self.task.state_dict(), rng=capture_rng(), evaluations=self.evaluations,
            wall_time_s=self.elapsed(), last_finite_loss=self.last_finite_loss,
            window=(self.window.rows(self.step), self.window.examples), best_model=self.best_model,
            host=describe(self.backend))

    def restore(self, path: Path, state: TrainingState) -> None:
        """Continue from a checkpoint's state; CheckpointError naming the file when it does
        not fit this run (the run is then refused, nothing written)."""
        self.window = state.restore(path, self.parts, self.cfg.train.log_every)
        self.step, self.evaluations = state.step, state.evaluations
        self.best_model, self.last_finite_loss = state.best_model, state.last_finite_loss
        self.wall_time_s, self._session_start = state.wall_time_s, time.perf_counter()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns the (detached) loss without reading it back."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _gradient_norm(self.model, self.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == y).sum(dtype=torch.float32)
            self.step += 1
            self.window.record(self.step, loss.detach(), grad_norm, correct, len(y))
        return loss.detach()

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

    def run_evaluation(self, monitor: Monitor) -> None:
        """Test (and validation) accuracy now; a new best validation accuracy keeps the
        weights for best.pt, written with the next checkpoint."""
        batch = self.cfg.train.eval_batch_size
        accuracy, loss = evaluate(self.model, self.task, batch)
        # The spectrum needs a host eigensolver (tens of ms at n=256): done at evaluations,
        # where it is small beside the evaluation itself, not at every log line.
        scalars = {"test/accuracy": accuracy, "test/loss": loss,
                   **recurrent_spectrum(self.model.cell, self.task.seq_len)}
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
        if self.cfg.train.gradient_flow:
            x, y = next(self.task.eval_batches(32))
            monitor.writer.add_figure("gradient_flow", plot_gradient_flow(
                {self.cfg.model.name: gradient_flow(self.model, x, y)}, f"step {self.step}"),
                self.step)
        monitor.progress(self.step, _evaluation_line(self.step, self.evaluations, loss))

    def fit(self, monitor: Monitor, checkpoints: Checkpoints,
            stop: Callable[[], bool] = lambda: False) -> Status:
        """Train up to train.steps: COMPLETED, DIVERGED (the last checkpoint keeps the last
        finite state) or INTERRUPTED (`stop()` said so; the state at that step boundary is
        checkpointed)."""
        # Read once: interpolations (conf/train.yaml) are parsed anew at each access (~1 ms)
        steps, log_every, eval_every, checkpoint_every = (int(self.cfg.train[k]) for k in (
            "steps", "log_every", "eval_every", "checkpoint_every"))
        self.task.save_artifacts(checkpoints.run_dir)
        if self.step >= steps:  # train.steps=0, or killed after the final checkpoint
            if not self.evaluations:
                self.run_evaluation(monitor)
                checkpoints.save(self.state())
            return Status.COMPLETED
        while self.step < steps:
            self.train_step(*self.task.train_batch(self.parts.sampler.next()))
            for hook in self.hooks:
                hook(self)
            step = self.step
            at_end = step == steps
            do_log = at_end or step % log_every == 0
            do_eval = at_end or step % eval_every == 0
            stopping = not at_end and stop()
            do_ckpt = at_end or stopping or step % checkpoint_every == 0
            if (do_log or do_eval or do_ckpt) and self.check_divergence():
                self.log_window(monitor)
                return Status.DIVERGED
            if do_log:
                self.log_window(monitor)
            if do_eval:
                self.run_evaluation(monitor)
            if do_ckpt:
                checkpoints.save(self.state())
            monitor.advance(step)
            if stopping:
                return Status.INTERRUPTED
        return Status.COMPLETED

    def result(self, status: Status, error: str | None = None) -> RunResult:
        """The run's record now (results.json)."""
        cfg, diverged = self.cfg, self.diverged if status is Status.DIVERGED else None
        stability, task = self.stability, self.task
        return RunResult(
            status=status, model=cfg.model.name, dataset=cfg.dataset.name,
            optimizer=cfg.optimizer.name, **evaluation_summary(self.evaluations),
            num_val=task.num_val, params=count_parameters(self.model), steps=self.step,
            wall_time_s=round(self.elapsed(), 3), hidden_size=cfg.model.hidden_size,
            device=str(self.parts.device), backend=self.backend,
            train_limit=cfg.dataset.train_limit, test_limit=cfg.dataset.test_limit,
            num_train=task.num_train, num_test=task.num_test,
            diverged_step=diverged[0] if diverged else None,
            divergence=diverged[1] if diverged else None,
            last_finite_loss=self.last_finite_loss, error=error, requeues=self.requeues,
            euler_rho=None if stability is None else stability.euler_rho,
            log10_growth=None if stability is None else stability.log10_growth,
            evaluations=self.evaluations, config=self.identity, host=describe(self.backend),
        )


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
