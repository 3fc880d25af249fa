"""The hyperparameter grid of the paper's Appendix C: conf/sweep/appendix_c.yaml sweeps it, every
preset value lies on it, and the stability warning proposes its points."""

from __future__ import annotations

from typing import Any

# The learning rates the adaptive optimizers (Adam, AdamW, RMSprop) are swept over: not the
# paper's (Appendix C's 0.1-1 are SGD's and Adagrad's), the usual decade around Adam's 1e-3.
ADAPTIVE_LR = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
APPENDIX_C: dict[str, tuple[Any, ...]] = {
    "sigma_w": (0, 1, 2, 4, 8, 16),
    "optimizer": ("sgd", "adagrad"),
    "lr": (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1),
    "eps": (0.01, 0.1, 1),
    "gamma": (0.001, 0.01, 0.1, 1.0),
}


def appendix_c(axis: str, current: Any) -> str:
    """A sweep axis of the grid (comma-separated values) for a setting the model has; for one it
    does not have (`current` is null), that one value: it adds no jobs. (The `appendix_c`
    resolver of the sweep YAML.)"""
    if current is None:
        return "null"
    return ",".join(str(v) for v in APPENDIX_C[axis])


def appendix_c_choice(axis: str, current: Any) -> str:
    """The same axis as a choice of Hydra's Optuna sweeper (conf/hparams_search/)."""
    values = appendix_c(axis, current)
    return values if current is None else f"choice({values})"


def register_resolver() -> None:
    """The resolvers of conf/sweep/appendix_c.yaml and conf/hparams_search/, for OmegaConf."""
    from omegaconf import OmegaConf

    for name, resolver in (("appendix_c", appendix_c), ("appendix_c_choice", appendix_c_choice)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
