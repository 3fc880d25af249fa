"""The values a configuration may hold, checked once per run before any work: each setting's
range (the general ones here, a registry entry's own in its `ranges`), the choices of the
settings that name something, the settings an entry has (and only those), the device.

`validate` says, in one line, which key, which value and what is allowed (ConfigError).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from arnn.errors import ConfigError, Range, invalid
from arnn.models import CELLS
from arnn.optimizers import LR_SCHEDULES
from arnn.recurrence import BACKEND_CHOICES
from arnn.registry import REGISTRIES, optional_settings, settings_of

DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("auto", "never", "must")
SEED_LIMIT = 2**32 - 1  # NumPy's and scikit-learn's seeds are 32-bit
# The ranges the types alone do not say; a registry entry may declare more (`ranges`), and
# every seed (a setting named seed or *_seed) is an integer in 0..SEED_LIMIT.
RANGES: dict[str, Range] = {
    "dataset.num_classes": Range(2, integer=True, high=1 << 20),
    "model.hidden_size": Range(1, integer=True, high=1 << 16),
    "model.eps": Range(0, strict=True),
    "model.gamma": Range(0),
    "model.sigma_w": Range(0),
    "optimizer.lr": Range(0, strict=True),
    "optimizer.momentum": Range(0),
    "optimizer.weight_decay": Range(0),
    "train.steps": Range(0, integer=True, high=1 << 40),
    "train.batch_size": Range(1, integer=True, high=1 << 24),
    "train.eval_every": Range(1, integer=True),
    "train.eval_batch_size": Range(1, integer=True, high=1 << 24),
    "train.log_every": Range(1, integer=True),
    "train.checkpoint_every": Range(1, integer=True),
    "train.grad_clip": Range(0, strict=True),
    "train.max_loss": Range(0, strict=True),
    "train.patience": Range(1, integer=True, high=1 << 40),
    "train.threads": Range(1, integer=True, high=1024),
    "dataset.input_size": Range(1, integer=True, high=1 << 20),
    "dataset.seq_len": Range(1, integer=True, high=1 << 24),
    "dataset.train_limit": Range(1, integer=True),
    "dataset.test_limit": Range(1, integer=True),
}
CHOICES = {"model.backend": BACKEND_CHOICES, "train.resume": RESUME_MODES,
           "train.lr_schedule": tuple(LR_SCHEDULES), "device": DEVICES}


def ranges() -> dict[str, Range]:
    """Every range a config's values are checked against."""
    out = dict(RANGES)
    for group, registry in REGISTRIES.items():
        for entry in registry.values():
            out.update({f"{group}.{key}": r for key, r in getattr(entry, "ranges", {}).items()})
        for key in (*optional_settings(group), "val_seed"):
            if key.endswith("_seed"):
                out[f"{group}.{key}"] = Range(0, integer=True, high=SEED_LIMIT)
    out["seed"] = Range(0, integer=True, high=SEED_LIMIT)
    return out


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
    for key, allowed_range in ranges().items():
        value = OmegaConf.select(cfg, key)
        if value is not None:
            plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            allowed_range.check(key, plain)
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
    if cfg.train.patience is not None and val_size == 0:
        raise invalid("train.patience", cfg.train.patience, "must be null without a "
                      "validation split (dataset.val_size=0): it watches the validation accuracy")
    fraction = cfg.dataset.test_fraction
    if fraction is not None and not 0 < fraction < 1:
        raise invalid("dataset.test_fraction", fraction, "must be between 0 and 1")
    _check_device(cfg)


def _check_device(cfg: DictConfig) -> None:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise invalid("device", cfg.device, "no CUDA GPU is available here; use device=cpu or auto")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
