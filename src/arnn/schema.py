"""The typed configuration (registered in Hydra's ConfigStore) and its composition: the schema,
the resolvers conf/ uses, composing `python train.py <overrides>`'s config, and composition errors
as one line.

The schema declares names and types (a misspelt key or a wrong type fails when Hydra composes);
which settings a model, optimizer or dataset has comes from its registry entry, nowhere else.
Values live in YAML (conf/train.yaml, conf/<group>/, conf/preset/); None marks a setting that the
chosen model, dataset or optimizer does not have. Their ranges: arnn.validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from arnn.data.tasks import DATASETS
from arnn.errors import ConfigError
from arnn.grid import register_resolver
from arnn.identity import run_name
from arnn.models import CELLS
from arnn.optimizers import OPTIMIZERS


@dataclass
class _ModelCommon:
    name: str = MISSING
    hidden_size: int = MISSING  # n; set per (model, task) by conf/preset/
    backend: str | None = MISSING  # recurrence backend: arnn.recurrence.BACKEND_CHOICES


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
    lr_schedule: str = MISSING  # constant (the paper's) | cosine: arnn.optimizers.LR_SCHEDULES
    max_loss: float | None = MISSING  # a logged window's mean loss above it: diverged
    patience: int | None = MISSING  # evaluations without a better validation accuracy: stop
    gradient_flow: bool = MISSING  # at each evaluation, draw ||dL/dh_t|| over t to TensorBoard
    threads: int | None = MISSING  # CPU threads (torch's and the cpu backend's); None: torch's
    flush_denormal: bool = MISSING  # CPU: subnormal floats computed as zero (arnn.host)


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    train: TrainConfig = MISSING
    seed: int = MISSING
    device: str = MISSING
    data_dir: str = MISSING


_SECTIONS = {"model": ModelConfig, "dataset": DatasetConfig, "optimizer": OptimizerConfig,
             "train": TrainConfig}


def study_storage(sweep_dir: str) -> str:
    """`${study_storage:${hydra.sweep.dir}}`, the storage line of configs written for Hydra's old
    Optuna sweeper (an SQLite URL in the sweep directory): still resolved, so that such a
    config meets the one-line refusal of hydra.sweeper.storage (arnn's sweeper keeps its study
    in <sweep dir>/optuna.journal) rather than an unknown resolver."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def preset_for(config_dir: Path, model: str, dataset: str) -> str:
    """`${arnn_preset:${model},${dataset}}`, the preset of the defaults list (conf/train.yaml):
    <config_dir>/preset/<model>_<dataset>.yaml when the pair has one, else that of the dataset
    its registry entry names (`presets_from`), and so on, ending at the digits' (the offline
    default's, which every model has)."""
    folder = Path(config_dir) / "preset"
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
        if outer.startswith("hydra.sweeper.params="):  # a sweep object inside a dict literal
            return ConfigError(f"{outer}: give each setting's search space as an override of "
                               "its own, e.g. model.eps=choice(0.1,1)")
    elif key and outer == inner:
        outer = f"{key.group(1)} is invalid"
    if key and re.match(r"Key '.*' not in ", inner):  # a misspelt key, most likely
        return ConfigError(f"{key.group(1)} is invalid: there is no such setting"
                           f"{_did_you_mean(key.group(1))}")
    return ConfigError(outer if outer == inner else f"{outer}: {inner}")


def _did_you_mean(dotted: str) -> str:
    """` (did you mean model.hidden_size?)` for a key the schema does not have, when one of
    its neighbours is close."""
    *parents, leaf = dotted.split(".")
    node = Config if not parents else _SECTIONS.get(parents[0]) if len(parents) == 1 else None
    if node is None:
        return ""
    close = difflib.get_close_matches(leaf, [f.name for f in dataclasses.fields(node)], n=1,
                                      cutoff=0.6)
    return f" (did you mean {'.'.join([*parents, close[0]])}?)" if close else ""


def register_configs(config_dir: Path | None = None) -> None:
    """The schema and the resolvers conf/ uses, for composing from `config_dir` (the presets
    are looked up there)."""
    ConfigStore.instance().store(name="train_schema", node=Config)
    register_resolver()
    for name, resolver in (("study_storage", study_storage), ("arnn_paper", paper_protocol),
                           ("arnn_paper_steps", paper_steps), ("arnn_run_name", _run_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    OmegaConf.register_new_resolver(
        "arnn_preset", functools.partial(preset_for, config_dir or default_config_dir()),
        replace=True)


def _run_name(*, _root_: DictConfig) -> str:
    """`${arnn_run_name:}` (conf/train.yaml's hydra.run.dir): the run's name by its identity."""
    return run_name(_root_)


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
