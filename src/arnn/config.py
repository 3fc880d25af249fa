"""Typed configuration (registered in Hydra's ConfigStore) and validation of values.

The schema catches misspelt keys when Hydra composes the config; `validate` catches bad values
before any work starts and says, in one line, which key, which value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

MODEL_NAMES = ("lstm", "arnn", "gated_arnn", "ablation")
DATASET_NAMES = ("digits", "mnist", "pmnist", "fashion_mnist", "cifar10", "noise_cifar10")
OPTIMIZER_NAMES = ("sgd", "adagrad")
BACKENDS = ("auto", "reference", "torch", "triton")
DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("auto", "never", "must")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is one line for the user."""


@dataclass
class ModelConfig:
    name: str = MISSING
    # Default: the paper's size for this (model, dataset), looked up in the dataset config.
    hidden_size: int = "${dataset.hidden_size.${model.name}}"  # type: ignore[assignment]
    eps: float = 0.1  # Euler step size (antisymmetric models)
    gamma: float = 0.01  # diffusion: A = W - W^T - gamma I (arnn, gated_arnn)
    sigma_w: float = 1.0  # hidden-to-hidden init ~ N(0, sigma_w^2 / n)
    backend: str = "auto"  # recurrence backend: auto | reference | torch | triton


@dataclass
class DatasetConfig:
    name: str = MISSING
    input_size: int = MISSING  # m: inputs per step
    seq_len: int = MISSING  # T: steps per sequence
    num_classes: int = 10
    # The paper's hidden size for each model on this task.
    hidden_size: dict[str, int] = field(default_factory=dict)
    standardize: bool = False  # subtract the training mean / divide by the std, per channel
    train_limit: int | None = None  # keep only the first N training examples
    test_limit: int | None = None  # keep only the first N test examples
    download: bool = True  # fetch missing files with torchvision
    path: str | None = None  # folder holding the files; default: data_dir
    permutation_seed: int = 0  # pmnist: seed of the fixed pixel permutation
    noise_seed: int = 0  # noise_cifar10: seed of the test set's noise
    split_seed: int = 0  # digits: seed of the fixed train/test split
    test_fraction: float = 0.25  # digits: share of examples held out for testing
    paper_steps: int = 50000  # the paper's iteration count for this task (sweep/appendix_c)


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 0.1
    momentum: float = 0.9  # sgd only; the paper does not state its value
    weight_decay: float = 0.0


@dataclass
class TrainConfig:
    steps: int = 2000  # training iterations
    batch_size: int = 128
    eval_every: int = 500  # evaluate on the test split every N steps (and at the end)
    eval_batch_size: int = 1000
    log_every: int = 100  # log lines, TensorBoard scalars and divergence checks every N steps
    checkpoint_every: int = 1000
    resume: str = "auto"  # auto | never | must
    grad_clip: float | None = None  # max global gradient norm; None: no clipping (the paper's)
    gradient_flow: bool = False  # at each evaluation, draw ||dL/dh_t|| over t to TensorBoard


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "auto"
    data_dir: str = "data"


@dataclass
class HalvingSweeperConfig:
    """hydra/sweeper=halving (conf/hydra/sweeper/halving.yaml holds the values)."""

    _target_: str = "hydra_plugins.arnn_halving_sweeper.halving_sweeper.HalvingSweeper"
    params: dict[str, str] | None = None  # the grid, as the basic sweeper's
    min_steps: int = MISSING  # budget of rung 0
    eta: int = MISSING  # keep the best 1/eta, multiply the budget by eta, each rung
    metric: str = MISSING  # test_accuracy | best_test_accuracy


def only_for(model: str, models: list[str], values: str, fallback: Any) -> str:
    """A sweep axis that exists only for some models: their values, else one fixed value."""
    return str(values) if model in models else str(fallback)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=Config)
    cs.store(group="hydra/sweeper", name="halving_schema", node=HalvingSweeperConfig)
    if not OmegaConf.has_resolver("only_for"):
        OmegaConf.register_new_resolver("only_for", only_for)


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


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value that cannot be used; do nothing else."""
    _choice("model", cfg.model.name, MODEL_NAMES)
    _choice("dataset", cfg.dataset.name, DATASET_NAMES)
    _choice("optimizer", cfg.optimizer.name, OPTIMIZER_NAMES)
    try:
        hidden_size = cfg.model.hidden_size
    except Exception:  # the interpolation into dataset.hidden_size found no entry
        raise ConfigError(
            f"model.hidden_size is not set and dataset {cfg.dataset.name!r} has no default for "
            f"model {cfg.model.name!r}: set model.hidden_size=N (N >= 1)"
        ) from None
    _number("model.hidden_size", hidden_size, low=1, strict=False, integer=True)
    _number("model.eps", cfg.model.eps, low=0, strict=True)
    _number("model.gamma", cfg.model.gamma, low=0, strict=False)
    _number("model.sigma_w", cfg.model.sigma_w, low=0, strict=False)
    _choice("model.backend", cfg.model.backend, BACKENDS)
    _number("optimizer.lr", cfg.optimizer.lr, low=0, strict=True)
    _number("optimizer.momentum", cfg.optimizer.momentum, low=0, strict=False)
    _number("optimizer.weight_decay", cfg.optimizer.weight_decay, low=0, strict=False)
    train = cfg.train
    _number("train.steps", train.steps, low=0, strict=False, integer=True)
    for key in ("batch_size", "eval_every", "eval_batch_size", "log_every", "checkpoint_every"):
        _number(f"train.{key}", train[key], low=1, strict=False, integer=True)
    _choice("train.resume", train.resume, RESUME_MODES)
    if train.grad_clip is not None:
        _number("train.grad_clip", train.grad_clip, low=0, strict=True)
    for key in ("train_limit", "test_limit"):
        if cfg.dataset[key] is not None:
            _number(f"dataset.{key}", cfg.dataset[key], low=1, strict=False, integer=True)
    if not 0 < cfg.dataset.test_fraction < 1:
        _fail("dataset.test_fraction", cfg.dataset.test_fraction, "must be between 0 and 1")
    _choice("device", cfg.device, DEVICES)
    import torch  # late: keep `validate` cheap to import

    if cfg.device == "cuda" and not torch.cuda.is_available():
        _fail("device", cfg.device, "no CUDA GPU is available here; use device=cpu or auto")
    if cfg.model.backend == "triton":
        from arnn.recurrence import triton_available

        if not triton_available(resolve_device(cfg.device)):
            _fail(
                "model.backend",
                cfg.model.backend,
                "the triton backend needs a CUDA device (or TRITON_INTERPRET=1); "
                "allowed here: auto, reference, torch",
            )


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
