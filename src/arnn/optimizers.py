"""The optimisers, registered by name (conf/optimizer/<name>.yaml): the paper's two (Appendix C:
SGD with momentum, Adagrad) and those the field tunes recurrent networks with (Adam, AdamW,
RMSprop: the usual choices for coRNN, UnICORNN, LEM and LSTM baselines). Each entry names the
settings it reads besides lr and weight_decay, with their types and ranges; and the learning-rate
schedules (train.lr_schedule) that scale lr over a run's steps."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from arnn.errors import Range

Params = Iterable[torch.nn.Parameter]


@dataclass(frozen=True)
class OptimizerSpec:
    build: Callable[[Params, DictConfig], torch.optim.Optimizer]
    # the optimizer settings it reads besides lr and weight_decay, with their types
    settings: dict[str, type] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)  # beyond what the types say
    paper: bool = False  # one of Appendix C's


BETAS = Range(0, high=1, high_strict=True, length=2)  # Adam's moment decays, each in [0, 1)
ADAM = {"betas": list[float], "eps": float}
ADAM_RANGES = {"betas": BETAS, "eps": Range(0, strict=True)}


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(
        lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                            weight_decay=cfg.weight_decay),
        settings={"momentum": float}, paper=True,
    ),
    "adagrad": OptimizerSpec(
        lambda params, cfg: torch.optim.Adagrad(
            params, lr=cfg.lr, initial_accumulator_value=cfg.initial_accumulator_value,
            weight_decay=cfg.weight_decay),
        settings={"initial_accumulator_value": float},
        ranges={"initial_accumulator_value": Range(0)}, paper=True,
    ),
    "adam": OptimizerSpec(
        lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas),
                                             eps=cfg.eps, weight_decay=cfg.weight_decay),
        settings=ADAM, ranges=ADAM_RANGES,
    ),
    "adamw": OptimizerSpec(
        lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas),
                                              eps=cfg.eps, weight_decay=cfg.weight_decay),
        settings=ADAM, ranges=ADAM_RANGES,
    ),
    "rmsprop": OptimizerSpec(
        lambda params, cfg: torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                                momentum=cfg.momentum, centered=cfg.centered,
                                                weight_decay=cfg.weight_decay),
        settings={"alpha": float, "eps": float, "momentum": float, "centered": bool},
        ranges={"alpha": Range(0, high=1), "eps": Range(0, strict=True)},
    ),
}


def build_optimizer(cfg: DictConfig, params: Params) -> torch.optim.Optimizer:
    """The optimiser named by `cfg.name` (a name validated against OPTIMIZERS)."""
    return OPTIMIZERS[cfg.name].build(params, cfg)


# The factor lr is multiplied by for the step that starts at `step` of `steps`: a function of
# the step alone, so a resumed run takes the same learning rates as an uninterrupted one.
LR_SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": lambda step, steps: 1.0,  # the paper's (Appendix C names no schedule)
    # cosine annealing without restarts (Loshchilov & Hutter, 2017): lr at step 0, 0 at `steps`
    "cosine": lambda step, steps: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps)),
}
