"""The settings each entry of the three registries has (models, optimizers, datasets): what
defines it, is validated, identifies a run and describes a job in the collector's tables.

Written once, in the registry entry (a cell's `settings`, an `OptimizerSpec`'s or a
`DatasetSpec`'s); everything else derives from `settings_of` and `columns`. Imports no Hydra
module: the collector reads through it.
"""

from __future__ import annotations

from typing import Any

from arnn.data.tasks import DATASETS
from arnn.models import CELLS
from arnn.optimizers import OPTIMIZERS

REGISTRIES: dict[str, dict[str, Any]] = {"model": CELLS, "optimizer": OPTIMIZERS,
                                         "dataset": DATASETS}
# The settings every entry of a group has; `settings_of` adds the entry's own.
COMMON_SETTINGS = {
    "model": ("name", "hidden_size"),
    "optimizer": ("name", "lr", "weight_decay"),
    "dataset": ("name", "input_size", "seq_len", "num_classes", "standardize", "val_size",
                "val_seed", "train_limit", "test_limit"),
}
# Training settings that change a run's numbers (train.steps does not: a larger count extends,
# unless a learning-rate schedule ends there: arnn.identity).
TRAIN_IDENTITY = ("batch_size", "grad_clip", "lr_schedule")


def settings_of(group: str, name: str) -> tuple[str, ...]:
    """The settings the entry `name` of `group` (model, optimizer, dataset) has."""
    return COMMON_SETTINGS[group] + tuple(REGISTRIES[group][name].settings)


def optional_settings(group: str) -> tuple[str, ...]:
    """The group's settings that some entries have and others do not (null for those)."""
    return tuple(dict.fromkeys(s for entry in REGISTRIES[group].values() for s in entry.settings
                               if s not in COMMON_SETTINGS[group]))


def columns() -> dict[str, str]:
    """Column name -> dotted config path of every setting a run can have, in table order: the
    entries' names (`model`, `optimizer`, `dataset`), the model's settings by their bare names
    (the paper's: hidden_size, eps, gamma, sigma_w), then the optimizer's, the dataset's and
    training's, bare unless the name is taken (then `<group>.<name>`), and the seed."""
    out = {group: f"{group}.name" for group in REGISTRIES}
    groups = [(g, COMMON_SETTINGS[g] + optional_settings(g)) for g in ("model", "optimizer",
                                                                     "dataset")]
    for group, keys in [*groups, ("train", TRAIN_IDENTITY)]:
        for key in keys:
            if key == "name":
                continue
            name = key if key not in out else f"{group}.{key}"
            out[name] = f"{group}.{key}"
    out["seed"] = "seed"
    return out
