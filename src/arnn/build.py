"""From a run's specification to its parts: device, task, model, optimizer, sampler.

The one place that wires config to objects (the runner, gradient_flow, bench and the tests all
build through it), in one order: seeds first, so that the same config gives the same weights.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arnn.data import EpochSampler, SequenceTask, build_task
from arnn.host import keep_freed_memory, set_flush_denormal, set_threads
from arnn.models import CELLS, SequenceClassifier, build_cell
from arnn.optimizers import build_optimizer
from arnn.spec import RunSpec

log = logging.getLogger("arnn")


@dataclass
class RunParts:
    device: torch.device
    task: SequenceTask
    model: SequenceClassifier
    optimizer: torch.optim.Optimizer
    sampler: EpochSampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(spec: RunSpec, task: SequenceTask) -> SequenceClassifier:
    """The model of the specification for the task's input size and classes (weights drawn
    from the global RNG: seed first), computed by its resolved backend."""
    m = spec.cfg.model
    options = {key: m[key] for key in CELLS[m.name].settings}
    if spec.backend is not None:
        options["backend"] = spec.backend
    cell = build_cell(m.name, task.input_size, m.hidden_size, **options)
    return SequenceClassifier(cell, task.num_classes).to(spec.device)


def build(spec: RunSpec, task: SequenceTask | None = None) -> RunParts:
    """The parts of the run `spec` describes. `task`: one already built from the same dataset
    config on the same device (several models on one dataset load it once)."""
    cfg = spec.cfg
    keep_freed_memory()
    set_threads(cfg.train.threads)
    flush = cfg.train.flush_denormal
    if (held := set_flush_denormal(flush)) != ("flushed" if flush else "kept"):
        log.warning(f"train.flush_denormal={str(flush).lower()}, but subnormal floats are "
                    f"{held} in this process: threads started before it was set (by an earlier "
                    "job in the same process) keep theirs, and some processors cannot flush")
    device = torch.device(spec.device)
    seed_everything(cfg.seed)
    if task is None:
        task = build_task(cfg.dataset, Path(cfg.data_dir).expanduser(), device)
    task.seed(cfg.seed)
    model = build_model(spec, task)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    sampler = EpochSampler(task.num_train, cfg.train.batch_size, cfg.seed, device)
    return RunParts(device, task, model, optimizer, sampler)
