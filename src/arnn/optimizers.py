"""The optimisers of Appendix C, registered by name (conf/optimizer/<name>.yaml)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

Params = Iterable[torch.nn.Parameter]


@dataclass(frozen=True)
class OptimizerSpec:
    build: Callable[[Params, DictConfig], torch.optim.Optimizer]
    # the optimizer settings it reads besides lr and weight_decay, with their types
    settings: dict[str, type] = field(default_factory=dict)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(
        lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                            weight_decay=cfg.weight_decay),
        settings={"momentum": float},
    ),
    "adagrad": OptimizerSpec(
        lambda params, cfg: torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    ),
}


def build_optimizer(cfg: DictConfig, params: Params) -> torch.optim.Optimizer:
    """The optimiser named by `cfg.name` (a name validated against OPTIMIZERS)."""
    return OPTIMIZERS[cfg.name].build(params, cfg)
