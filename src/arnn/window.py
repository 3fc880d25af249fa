"""The statistics of the steps since the last log line, kept on the training device."""

from __future__ import annotations

import time
from typing import Any

import torch


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
                and isinstance(examples, int) and 0 <= examples <= 1 << 62):
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
