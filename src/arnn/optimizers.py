"""The optimisers of Appendix C, registered by name (conf/optimizer/<name>.yaml)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from omegaconf import DictConfig


def _sgd(params: Iterable[torch.nn.Parameter], cfg: DictConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def _adagrad(params: Iterable[torch.nn.Parameter], cfg: DictConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# name -> (builder, the optimizer settings it reads besides lr and weight_decay)
OPTIMIZERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], tuple[str, ...]]] = {
    "sgd": (_sgd, ("momentum",)),
    "adagrad": (_adagrad, ()),
}


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser named by `cfg.name` (a name validated against OPTIMIZERS)."""
    builder, _ = OPTIMIZERS[cfg.name]
    return builder(params, cfg)
