"""Typed configuration (registered in Hydra's ConfigStore) and validation of values.

The schema catches misspelt keys when Hydra composes the config; `validate` catches bad values
before any work starts and says, in one line, which key, which value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

BACKENDS = ("auto", "reference", "torch", "triton")
DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("auto", "never", "must")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is one line for the user."""


# The schema declares names and types; every value lives in YAML (conf/train.yaml, conf/<group>/,
# conf/preset/). None marks a setting that the chosen model, dataset or optimizer does not have.


@dataclass
class ModelConfig:
    name: str = MISSING
    hidden_size: int = MISSING  # n; conf/train.yaml: the paper's size from dataset.hidden_size
    eps: float | None = MISSING  # Euler step size (antisymmetric models and the ablation)
    gamma: float | None = MISSING  # diffusion: A = W - W^T - gamma I (arnn, gated_arnn)
    sigma_w: float = MISSING  # hidden-to-hidden init ~ N(0, sigma_w^2 / n)
    backend: str | None = MISSING  # recurrence backend: auto | reference | torch | triton


@dataclass
class DatasetConfig:
    name: str = MISSING
    input_size: int = MISSING  # m: inputs per step
    seq_len: int = MISSING  # T: steps per sequence
    num_classes: int = MISSING
    hidden_size: dict[str, int] = MISSING  # the paper's hidden size for each model on this task
    standardize: bool = MISSING  # subtract the training mean / divide by the std, per channel
    download: bool = MISSING  # fetch missing files with torchvision
    paper_steps: int | None = MISSING  # the paper's iteration count (None: not a paper task)
    train_limit: int | None = None  # keep only the first N training examples
    test_limit: int | None = None  # keep only the first N test examples
    path: str | None = None  # folder holding the files; default: data_dir
    permutation_seed: int | None = None  # pmnist: seed of the fixed pixel permutation
    noise_seed: int | None = None  # noise_cifar10: seed of the test set's noise
    split_seed: int | None = None  # digits: seed of the fixed train/test split
    test_fraction: float | None = None  # digits: share of examples held out for testing


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING  # conf/preset/: chosen per (model, task)
    momentum: float | None = MISSING  # sgd only; the paper does not state its value
    weight_decay: float = MISSING


@dataclass
class TrainConfig:
    steps: int = MISSING  # training iterations
    batch_size: int = MISSING
    eval_every: int = MISSING  # evaluate on the test split every N steps (and at the end)
    eval_batch_size: int = MISSING
    log_every: int = MISSING  # log lines, TensorBoard scalars and divergence checks every N steps
    checkpoint_every: int = MISSING
    resume: str = MISSING  # auto | never | must
    grad_clip: float | None = MISSING  # max global gradient norm; None: no clipping (the paper's)
    max_loss: float | None = MISSING  # a logged window's mean loss above it: diverged
    gradient_flow: bool = MISSING  # at each evaluation, draw ||dL/dh_t|| over t to TensorBoard


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    train: TrainConfig = MISSING
    seed: int = MISSING
    device: str = MISSING
    data_dir: str = MISSING


@dataclass
class HalvingSweeperConfig:
    """hydra/sweeper=halving (conf/hydra/sweeper/halving.yaml holds the values)."""

    _target_: str = "hydra_plugins.arnn_halving_sweeper.halving_sweeper.HalvingSweeper"
    params: dict[str, str] | None = None  # the grid, as the basic sweeper's
    min_steps: int = MISSING  # budget of rung 0
    eta: int = MISSING  # keep the best 1/eta, multiply the budget by eta, each rung
    metric: str = MISSING  # test_accuracy | best_test_accuracy


# The hyperparameter grid of the paper's Appendix C (conf/sweep/appendix_c.yaml sweeps it; every
# preset value lies on it; the stability warning proposes its points).
APPENDIX_C: dict[str, tuple[Any, ...]] = {
    "sigma_w": (0, 1, 2, 4, 8, 16),
    "optimizer": ("sgd", "adagrad"),
    "lr": (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1),
    "eps": (0.01, 0.1, 1),
    "gamma": (0.001, 0.01, 0.1, 1.0),
}


def appendix_c(axis: str, current: Any) -> str:
    """A sweep axis of the Appendix C grid (comma-separated values) for a setting the model has;
    for one it does not have (`current` is null), that one value: it adds no jobs."""
    if current is None:
        return "null"
    return ",".join(str(v) for v in APPENDIX_C[axis])


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=Config)
    cs.store(group="hydra/sweeper", name="halving_schema", node=HalvingSweeperConfig)
    if not OmegaConf.has_resolver("appendix_c"):
        OmegaConf.register_new_resolver("appendix_c", appendix_c)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(key, value, "allowed: " + ", ".join(allowed))


def _number(key: str, value: Any, *, low: float, strict: bool, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    relation = ">" if strict else ">="
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    if not ok:
        _fail(key, value, f"must be {kind} {relation} {low:g}")


def _settings(key: str, name: str, node: DictConfig, used: tuple[str, ...],
              optional: tuple[str, ...]) -> None:
    """Settings of `node` that the chosen model/optimizer does not have must be null."""
    for field_name in optional:
        if field_name not in used and node[field_name] is not None:
            _fail(f"{key}.{field_name}", node[field_name],
                  f"{key}={name} has no {field_name} (set it to null or leave it out)")
        if field_name in used and node[field_name] is None:
            _fail(f"{key}.{field_name}", None, f"{key}={name} needs a value")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value that cannot be used; do nothing else."""
    from arnn.data.tasks import DATASET_SETTINGS, DATASETS  # late: the registries import torch
    from arnn.models import CELLS
    from arnn.optimizers import OPTIMIZERS

    _choice("model", cfg.model.name, tuple(CELLS))
    _choice("dataset", cfg.dataset.name, tuple(DATASETS))
    _choice("optimizer", cfg.optimizer.name, tuple(OPTIMIZERS))
    model = cfg.model
    try:
        hidden_size = model.hidden_size
    except Exception:  # the interpolation into dataset.hidden_size found no entry
        raise ConfigError(
            f"model.hidden_size is not set and dataset {cfg.dataset.name!r} has no default for "
            f"model {model.name!r}: set model.hidden_size=N (N >= 1)"
        ) from None
    _number("model.hidden_size", hidden_size, low=1, strict=False, integer=True)
    _settings("model", model.name, model, CELLS[model.name].hyperparameters,
              ("eps", "gamma", "backend"))
    if model.eps is not None:
        _number("model.eps", model.eps, low=0, strict=True)
    if model.gamma is not None:
        _number("model.gamma", model.gamma, low=0, strict=False)
    _number("model.sigma_w", model.sigma_w, low=0, strict=False)
    if model.backend is not None:
        _choice("model.backend", model.backend, BACKENDS)
    optimizer = cfg.optimizer
    _settings("optimizer", optimizer.name, optimizer, OPTIMIZERS[optimizer.name][1],
              ("momentum",))
    _number("optimizer.lr", optimizer.lr, low=0, strict=True)
    if optimizer.momentum is not None:
        _number("optimizer.momentum", optimizer.momentum, low=0, strict=False)
    _number("optimizer.weight_decay", optimizer.weight_decay, low=0, strict=False)
    train = cfg.train
    _number("train.steps", train.steps, low=0, strict=False, integer=True)
    for key in ("batch_size", "eval_every", "eval_batch_size", "log_every", "checkpoint_every"):
        _number(f"train.{key}", train[key], low=1, strict=False, integer=True)
    _choice("train.resume", train.resume, RESUME_MODES)
    if train.grad_clip is not None:
        _number("train.grad_clip", train.grad_clip, low=0, strict=True)
    if train.max_loss is not None:
        _number("train.max_loss", train.max_loss, low=0, strict=True)
    _settings("dataset", cfg.dataset.name, cfg.dataset, DATASETS[cfg.dataset.name][2],
              DATASET_SETTINGS)
    for key in ("train_limit", "test_limit"):
        if cfg.dataset[key] is not None:
            _number(f"dataset.{key}", cfg.dataset[key], low=1, strict=False, integer=True)
    if cfg.dataset.test_fraction is not None and not 0 < cfg.dataset.test_fraction < 1:
        _fail("dataset.test_fraction", cfg.dataset.test_fraction, "must be between 0 and 1")
    _choice("device", cfg.device, DEVICES)
    import torch  # late: keep `validate` cheap to import

    if cfg.device == "cuda" and not torch.cuda.is_available():
        _fail("device", cfg.device, "no CUDA GPU is available here; use device=cpu or auto")
    if model.backend == "triton":
        from arnn.recurrence import triton_available

        if not triton_available(resolve_device(cfg.device)):
            _fail(
                "model.backend",
                model.backend,
                "the triton backend needs a CUDA device (or TRITON_INTERPRET=1); "
                "allowed here: auto, reference, torch",
            )


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
