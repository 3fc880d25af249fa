"""Typed configuration (registered in Hydra's ConfigStore), the settings each registry entry
has, and validation of values.

The schema catches misspelt keys and wrong types when Hydra composes the config; `validate`
catches bad values before any work starts and says, in one line, which key, which value and
what is allowed. Which settings a model, optimizer or dataset has comes from its registry entry
(`settings_of`), nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from arnn.data.tasks import DATASETS
from arnn.errors import ConfigError, Range, invalid
from arnn.grid import register_resolver
from arnn.models import CELLS
from arnn.optimizers import OPTIMIZERS
from arnn.recurrence import triton_available
from arnn.registry import REGISTRIES, optional_settings, settings_of

BACKENDS = ("auto", "reference", "torch", "cpu", "triton")
DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("auto", "never", "must")

# The schema declares names and types; every value lives in YAML (conf/train.yaml, conf/<group>/,
# conf/preset/). None marks a setting that the chosen model, dataset or optimizer does not have.


@dataclass
class _ModelCommon:
    name: str = MISSING
    hidden_size: int = MISSING  # n; set per (model, task) by conf/preset/
    backend: str | None = MISSING  # recurrence backend: auto | reference | torch | triton


@dataclass
class _DatasetCommon:
    name: str = MISSING
    input_size: int = MISSING  # m: inputs per step
    seq_len: int = MISSING  # T: steps per sequence
    num_classes: int = MISSING
    standardize: bool = MISSING  # subtract the training mean / divide by the std, per channel
    download: bool = MISSING  # fetch missing files with torchvision
    # Held out of the training split for choosing settings (stratified; conf/dataset/*.yaml):
    # a count, a fraction in (0, 1), or 0 for none (train on the whole split, as the paper).
    val_size: Any = MISSING
    val_seed: int = MISSING  # draws the validation examples, apart from `seed`: a sweep shares them
    train_limit: int | None = None  # keep only the first N training examples
    test_limit: int | None = None  # keep only the first N test examples
    path: str | None = None  # folder holding the files; default: data_dir


@dataclass
class _OptimizerCommon:
    name: str = MISSING
    lr: float = MISSING  # conf/preset/: chosen per (model, task)
    weight_decay: float = MISSING


def _declared(entry: Any) -> dict[str, type]:
    """A registry entry's settings with their types: a spec's `settings` mapping, or a cell's
    `settings` names typed by its constructor's annotations (the constructor takes them)."""
    if isinstance(entry.settings, dict):
        return entry.settings
    hints = get_type_hints(entry.__init__)
    return {key: hints[key] for key in entry.settings}


def _with_registry_settings(name: str, base: type, registry: dict[str, Any]) -> type:
    """`base` plus one optional field per setting that entries of `registry` declare (with its
    type; None for the entries that do not have it): a new setting is declared once, in its
    registry entry."""
    declared: dict[str, type] = {}
    for entry in registry.values():
        declared.update(_declared(entry))
    fields = [(key, kind | None, dataclasses.field(default=None))
              for key, kind in declared.items()]
    return dataclasses.make_dataclass(name, fields, bases=(base,))


ModelConfig = _with_registry_settings("ModelConfig", _ModelCommon, CELLS)
DatasetConfig = _with_registry_settings("DatasetConfig", _DatasetCommon, DATASETS)
OptimizerConfig = _with_registry_settings("OptimizerConfig", _OptimizerCommon, OPTIMIZERS)


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
    threads: int | None = MISSING  # CPU threads (torch's and the cpu backend's); None: torch's


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    train: TrainConfig = MISSING
    seed: int = MISSING
    device: str = MISSING
    data_dir: str = MISSING


def study_storage(sweep_dir: str) -> str:
    """`${study_storage:${hydra.sweep.dir}}`, the storage line of configs written for Hydra's old
    Optuna sweeper (an SQLite URL in the sweep directory): still resolved, so that such a
    config meets the one-line refusal of hydra.sweeper.storage (arnn's sweeper keeps its study
    in <sweep dir>/optuna.journal) rather than an unknown resolver."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


_config_dir: Path | None = None  # where `preset_for` looks for preset files


def preset_for(model: str, dataset: str) -> str:
    """`${arnn_preset:${model},${dataset}}`, the preset of the defaults list (conf/train.yaml):
    conf/preset/<model>_<dataset>.yaml when the pair has one, else that of the dataset its
    registry entry names (`presets_from`), and so on, ending at the digits' (the offline
    default's, which every model has)."""
    folder = (_config_dir or default_config_dir()) / "preset"
    seen = [dataset]
    while not (folder / f"{model}_{seen[-1]}.yaml").is_file() and seen[-1] in DATASETS:
        nearer = DATASETS[seen[-1]].presets_from
        if nearer in seen:
            break
        seen.append(nearer)
    return f"{model}_{seen[-1]}"


def paper_protocol(dataset: str, on_paper: Any, otherwise: Any) -> Any:
    """`${arnn_paper:${dataset.name},A,B}` (conf/train.yaml): A on a dataset that follows the
    paper's protocol (its registry entry has `paper_steps`), else B."""
    spec = DATASETS.get(dataset)
    return otherwise if spec is None or spec.paper_steps is None else on_paper


def paper_steps(dataset: str, otherwise: int) -> int:
    """`${arnn_paper_steps:${dataset.name},N}`: the paper's step count on its tasks, else N."""
    return paper_protocol(dataset, DATASETS[dataset].paper_steps if dataset in DATASETS else None,
                          otherwise)


def composition_error(error: BaseException) -> ConfigError:
    """A value Hydra could not compose (the wrong type, a number beyond a float, an unknown key)
    as one line: `dataset.seq_len=abc is invalid: Value 'abc' of type 'str' could not be
    converted to Integer`."""
    def first(e: BaseException) -> str:
        return (str(e).strip().splitlines() or [type(e).__name__])[0]

    cause = error.__cause__ or error
    outer, inner = first(error), first(cause)
    key = re.search(r"full_key: (\S+)", f"{error}\n{cause}")
    if outer.startswith("Error merging override "):
        outer = f"{outer.removeprefix('Error merging override ')} is invalid"
    elif key and outer == inner:
        outer = f"{key.group(1)} is invalid"
    return ConfigError(outer if outer == inner else f"{outer}: {inner}")


def register_configs(config_dir: Path | None = None) -> None:
    global _config_dir
    _config_dir = config_dir if config_dir is not None else _config_dir
    ConfigStore.instance().store(name="train_schema", node=Config)
    register_resolver()
    for name, resolver in (("study_storage", study_storage), ("arnn_preset", preset_for),
                           ("arnn_paper", paper_protocol), ("arnn_paper_steps", paper_steps)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


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

    config_dir = Path(config_dir or default_config_dir())
    register_configs(config_dir)
    with initialize_config_dir(config_dir=str(config_dir),
                               version_base="1.3"):
        return compose(config_name="train", overrides=overrides,
                       return_hydra_config=return_hydra_config)


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
    "train.threads": Range(1, integer=True, high=1024),
    "dataset.input_size": Range(1, integer=True, high=1 << 20),
    "dataset.seq_len": Range(1, integer=True, high=1 << 24),
    "dataset.train_limit": Range(1, integer=True),
    "dataset.test_limit": Range(1, integer=True),
}
CHOICES = {"model.backend": BACKENDS, "train.resume": RESUME_MODES, "device": DEVICES}


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
    fraction = cfg.dataset.test_fraction
    if fraction is not None and not 0 < fraction < 1:
        raise invalid("dataset.test_fraction", fraction, "must be between 0 and 1")
    _check_device(cfg)


def available_memory(device: str) -> int:
    """Bytes the run's device has free: the GPU's, or the machine's (MemAvailable)."""
    import torch

    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024


def memory_needed(cfg: DictConfig) -> tuple[int, str]:
    """About how many bytes a run of `cfg` allocates (fp32), and the setting that drives it:
    the weights (at most an LSTM's 4n(n + m) and the head) with their gradients, optimizer state
    and best copy; a training batch's sequences and the states kept for backpropagation through
    time; an evaluation batch's. An upper estimate, made before anything is allocated."""
    n, m, steps = cfg.model.hidden_size, cfg.dataset.input_size, cfg.dataset.seq_len
    weights = 4 * 6 * 4 * n * (n + m + cfg.dataset.num_classes)
    batch = 4 * steps * (m + 12 * n) * cfg.train.batch_size
    evaluation = 4 * steps * (m + 4 * n) * cfg.train.eval_batch_size
    driver = "model.hidden_size" if weights >= batch + evaluation else (
        "dataset.seq_len" if steps * (m + n) > max(cfg.train.batch_size,
                                                   cfg.train.eval_batch_size) else
        "train.batch_size")
    return weights + batch + evaluation, driver


def check_memory(cfg: DictConfig) -> None:
    """Refuse, before anything is allocated, a run that cannot fit in the device's memory."""
    needed, driver = memory_needed(cfg)
    available = available_memory(resolve_device(cfg.device))
    if needed > available:
        raise invalid(driver, OmegaConf.select(cfg, driver),
                      f"with model.hidden_size={cfg.model.hidden_size}, dataset.seq_len="
                      f"{cfg.dataset.seq_len}, dataset.input_size={cfg.dataset.input_size} and "
                      f"train.batch_size={cfg.train.batch_size} this run needs about "
                      f"{_size(needed)} of memory; {_size(available)} is available")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.1f} {unit}"
        count /= 1000
    return ""


def _check_device(cfg: DictConfig) -> None:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise invalid("device", cfg.device, "no CUDA GPU is available here; use device=cpu or auto")
    if cfg.model.backend == "cpu" and resolve_device(cfg.device) == "cuda":
        raise invalid("model.backend", "cpu", "the cpu backend computes on the CPU: use "
                      "device=cpu, or backend auto, torch or triton on the GPU")
    if cfg.model.backend == "triton" and not triton_available(resolve_device(cfg.device)):
        raise invalid("model.backend", "triton", "the triton backend needs a CUDA device (or "
                      "TRITON_INTERPRET=1); allowed here: auto, reference, torch")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
