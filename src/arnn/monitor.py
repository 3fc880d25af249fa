"""What a run reports while it trains: TensorBoard scalars, hparams, progress and log lines."""

from __future__ import annotations

import logging
import sys
from typing import Any

from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from arnn.storage import Folder

log = logging.getLogger("arnn")


class Monitor:
    """Event files go into the run directory itself, so `tensorboard --logdir outputs` shows one
    curve per run. On resume, `purge_step` drops events a killed session wrote after its last
    checkpoint, so curves continue without duplicated steps."""

    def __init__(self, folder: Folder, total_steps: int, start_step: int) -> None:
        # The run directory as held open: its event file lands there whatever its path does.
        self.writer = SummaryWriter(
            log_dir=folder.proc_path, purge_step=start_step + 1 if start_step else None
        )
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True,
                            unit="it", leave=False)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def progress(self, step: int, line: str, postfix: dict[str, Any] | None = None) -> None:
        """A log line (Hydra's job log and, without a terminal, the console) and the bar."""
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(postfix or {}, refresh=True)
            self.bar.clear()
        log.info(line)
        if self.bar is not None:
            self.bar.refresh()

    def window(self, step: int, total: int, stats: dict[str, float]) -> None:
        """A training window's scalars and its log line."""
        self.scalars(step, stats)
        self.progress(step, window_line(step, total, stats),
                      {"loss": f"{stats['train/loss']:.3f}",
                       "acc": f"{stats['train/accuracy']:.3f}"})

    def advance(self, step: int) -> None:
        if self.bar is not None and step - self.bar.n >= max(1, self.bar.total // 200):
            self.bar.update(step - self.bar.n)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The HParams tab entry, written into this run's own event file (torch's add_hparams
        would open a new sub-run directory)."""
        exp, ssi, sei = hparams(params, metrics)
        fw = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The flattened hyperparameters shown in TensorBoard's HParams tab: names, the learning
    rate, every model setting (null for those the model does not have) and the seed."""
    model = {k: v for k, v in cfg.model.items() if k not in ("name", "backend")}
    return {"model": cfg.model.name, "dataset": cfg.dataset.name,
            "optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr, **model, "seed": cfg.seed}


def duration(seconds: float) -> str:
    """1h05m, 4m10s, 12s."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def window_line(step: int, total: int, stats: dict[str, float]) -> str:
    """The log line of a training window (the stats of `StepWindow.stats`)."""
    left = duration((total - step) / stats["train/steps_per_s"])
    return (f"step {step}/{total} loss {stats['train/loss']:.4f} "
            f"acc {stats['train/accuracy']:.3f} grad_norm {stats['train/grad_norm']:.3g} "
            f"{stats['train/steps_per_s']:.1f} it/s, {left} left")
