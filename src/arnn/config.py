"""Typed configuration (registered in Hydra's ConfigStore), the settings each registry entry
has, and validation of values.

The schema catches misspelt keys and wrong types when Hydra composes the config; `validate`
catches bad values before any work starts and says, in one line, which key, which value and
what is allowed. Which settings a model, optimizer or dataset has comes from its registry entry
(`settings_of`), nowhere else.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from arnn.data.tasks import DATASETS
from arnn.errors import ConfigError, invalid
from arnn.grid import register_resolver
from arnn.models import CELLS
from arnn.optimizers import OPTIMIZERS
from arnn.recurrence import triton_available

BACKENDS = ("auto", "reference", "torch", "triton")
DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("auto", "never", "must")

# The schema declares names and types; every value lives in YAML (conf/train.yaml, conf/<group>/,
# conf/preset/). None marks a setting that the chosen model, dataset or optimizer does not have.


@dataclass
class ModelConfig:
    name: str = MISSING
    hidden_size: int = MISSING  # n; set per (model, task) by conf/preset/
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
    standardize: bool = MISSING  # subtract the training mean / divide by the std, per channel
    download: bool = MISSING  # fetch missing files with torchvision
    paper_steps: int | None = MISSING  # the paper's iteration count (None: not a paper task)
    # Held out of the training split for choosing settings (stratified; conf/dataset/*.yaml):
    # a count, a fraction in (0, 1), or 0 for none (train on the whole split, as the paper).
    val_size: Any = MISSING
    val_seed: int = MISSING  # draws the validation examples, apart from `seed`: a sweep shares them
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


# The settings every entry of a group has; `settings_of` adds the entry's own.
REGISTRIES: dict[str, dict[str, Any]] = {"model": CELLS, "optimizer": OPTIMIZERS,
                                         "dataset": DATASETS}
COMMON_SETTINGS = {
    "model": ("name", "hidden_size"),
    "optimizer": ("name", "lr", "weight_decay"),
    "dataset": ("name", "input_size", "seq_len", "num_classes", "standardize", "val_size",
                "val_seed", "train_limit", "test_limit"),
}


def settings_of(group: str, name: str) -> tuple[str, ...]:
    """The settings the entry `name` of `group` (model, optimizer, dataset) has: what defines
    it, is validated, identifies a run and describes a job in the collector."""
    return COMMON_SETTINGS[group] + REGISTRIES[group][name].settings


def optional_settings(group: str) -> tuple[str, ...]:
    """The group's settings that some entries have and others do not (null for those)."""
    return tuple(dict.fromkeys(s for entry in REGISTRIES[group].values() for s in entry.settings
                               if s not in COMMON_SETTINGS[group]))


def study_storage(sweep_dir: str) -> str:
    """`${study_storage:${hydra.sweep.dir}}` (conf/hparams_search/): the SQLite URL of an Optuna
    study kept in the sweep directory, which is made here because the sweeper opens the study
    before any job has created it."""
    path = Path(sweep_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"


def register_configs() -> None:
    ConfigStore.instance().store(name="train_schema", node=Config)
    register_resolver()
    if not OmegaConf.has_resolver("study_storage"):
        OmegaConf.register_new_resolver("study_storage", study_storage)


def default_config_dir() -> Path:
    """$ARNN_CONFIG_DIR if set, else conf/ of the source checkout (editable install), else
    ./conf."""
    if os.environ.get("ARNN_CONFIG_DIR"):
        return Path(os.environ["ARNN_CONFIG_DIR"]).resolve()
    repo_conf = Path(__file__).resolve().parents[2] / "conf"
    return repo_conf if repo_conf.is_dir() else Path.cwd() / "conf"


def compose_config(
    overrides: list[str], config_dir: Path | None = None, return_hydra_config: bool = False
) -> DictConfig:
    """The config `python train.py <overrides>` would run (for scripts, tools and tests)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir or default_config_dir()),
                               version_base="1.3"):
        return compose(config_name="train", overrides=overrides,
                       return_hydra_config=return_hydra_config)


# key -> (lower bound, bound excluded, integer): the ranges the types alone do not say.
RANGES: dict[str, tuple[float, bool, bool]] = {
    "seed": (0, False, True),
    "dataset.num_classes": (2, False, True),
    "model.hidden_size": (1, False, True),
    "model.eps": (0, True, False),
    "model.gamma": (0, False, False),
    "model.sigma_w": (0, False, False),
    "optimizer.lr": (0, True, False),
    "optimizer.momentum": (0, False, False),
    "optimizer.weight_decay": (0, False, False),
    "train.steps": (0, False, True),
    "train.batch_size": (1, False, True),
    "train.eval_every": (1, False, True),
    "train.eval_batch_size": (1, False, True),
    "train.log_every": (1, False, True),
    "train.checkpoint_every": (1, False, True),
    "train.grad_clip": (0, True, False),
    "train.max_loss": (0, True, False),
    "dataset.input_size": (1, False, True),
    "dataset.seq_len": (1, False, True),
    "dataset.val_seed": (0, False, True),
    "dataset.train_limit": (1, False, True),
    "dataset.test_limit": (1, False, True),
}
CHOICES = {"model.backend": BACKENDS, "train.resume": RESUME_MODES, "device": DEVICES}


def _check_range(key: str, value: Any, low: float, strict: bool, integer: bool) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value > low if strict else value >= low)):
        kind = "an integer" if integer else "a number"
        raise invalid(key, value, f"must be {kind} {'>' if strict else '>='} {low:g}")


def _check_settings(cfg: DictConfig, group: str) -> None:
    """A setting the chosen entry does not have must be null; one it has needs a value."""
    name = cfg[group].name
    if name not in REGISTRIES[group]:
        raise invalid(group, name, REGISTRIES[group])
    has = settings_of(group, name)
    for key in optional_settings(group):
        value = cfg[group][key]
        if key not in has and value is not None:
            raise invalid(f"{group}.{key}", value,
                          f"{group}={name} has no {key} (set it to null or leave it out)")
        if key in has and value is None:
            raise invalid(f"{group}.{key}", None, f"{group}={name} needs a value")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value that cannot be used; do nothing else."""
    for group in REGISTRIES:
        _check_settings(cfg, group)
    if OmegaConf.is_missing(cfg.model, "hidden_size"):
        raise ConfigError(
            f"model.hidden_size is not set for model {cfg.model.name!r} on dataset "
            f"{cfg.dataset.name!r}: set model.hidden_size=N (N >= 1)"
        )
    backend, name = cfg.model.backend, cfg.model.name
    if backend is not None and not CELLS[name].takes_backend:
        raise invalid("model.backend", backend,
                      f"model={name} has no backend (set it to null or leave it out)")
    if backend is None and CELLS[name].takes_backend:
        raise invalid("model.backend", None, f"model={name} needs a value")
    for key, (low, strict, integer) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None:
            _check_range(key, value, low, strict, integer)
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed:
            raise invalid(key, value, allowed)
    val_size = cfg.dataset.val_size
    if isinstance(val_size, bool) or not (
        (isinstance(val_size, int) and val_size >= 0)
        or (isinstance(val_size, float) and 0 < val_size < 1)
    ):
        raise invalid("dataset.val_size", val_size, "must be a count >= 0 (0: no validation "
                      "split) or a fraction between 0 and 1")
    if cfg.seed >= 1 << 32:  # numpy's seeds are 32-bit
        raise invalid("seed", cfg.seed, "must be an integer in 0..4294967295")
    fraction = cfg.dataset.test_fraction
    if fraction is not None and not 0 < fraction < 1:
        raise invalid("dataset.test_fraction", fraction, "must be between 0 and 1")
    _check_device(cfg)


def _check_device(cfg: DictConfig) -> None:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise invalid("device", cfg.device, "no CUDA GPU is available here; use device=cpu or auto")
    if cfg.model.backend == "triton" and not triton_available(resolve_device(cfg.device)):
        raise invalid("model.backend", "triton", "the triton backend needs a CUDA device (or "
                      "TRITON_INTERPRET=1); allowed here: auto, reference, torch")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
