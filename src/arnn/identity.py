"""A run's identity: the settings its numbers depend on, the name of its directory derived from
them, and the check that a run directory holds the same run before it is resumed or extended.

The fingerprint holds exactly the settings the run has (`arnn.registry.settings_of` for the
model, optimizer and dataset), the training settings that change its numbers
(`registry.TRAIN_IDENTITY`) and the seed. Not in it: train.steps (a larger count extends a
run; but a learning-rate schedule other than constant ends there, and then it is in), the
backend (the same function computed another way), where the data lives. Compatibility rule: a
saved fingerprint is compared on the keys of the current one; keys it holds beyond them (older
versions recorded every setting of a group, e.g. eps for the LSTM, the datasets' hidden-size
tables, train.steps) are ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from arnn.checkpoint import CheckpointError
from arnn.registry import REGISTRIES, TRAIN_IDENTITY, settings_of


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The identity of the run `cfg` composes (reads only the groups it needs: a config's
    hydra node may refer to it)."""
    def group(name: str) -> dict[str, Any]:
        return OmegaConf.to_container(cfg[name], resolve=True)

    out: dict[str, Any] = {}
    for name in REGISTRIES:
        data = group(name)
        out[name] = {key: data[key] for key in settings_of(name, data["name"])}
    train = group("train")
    out["train"] = {key: train[key] for key in TRAIN_IDENTITY}
    if train["lr_schedule"] != "constant":  # the schedule's horizon: such a run is not extended
        out["train"]["steps"] = train["steps"]
    out["seed"] = cfg.seed
    return out


def run_name(cfg: DictConfig) -> str:
    """A single run's directory name: `<model>_<dataset>_<digest of the identity>`, so that the
    same command finds the same directory and continues (or reports) the run in it, and
    another configuration gets another."""
    identity = fingerprint(cfg)
    for key in UNNAMED_AT_LEGACY:  # runs named before the key existed keep their name
        group, name = key.split(".")
        if identity[group].get(name) == LEGACY[key]:
            del identity[group][name]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{identity['model']['name']}_{identity['dataset']['name']}_{digest}"


# Settings added after runs were recorded without them: the value that reproduces those runs.
LEGACY = {"dataset.val_size": 0, "dataset.val_seed": 0, "train.lr_schedule": "constant",
          "optimizer.initial_accumulator_value": 0.0}
# Of those, the ones added after run directories were named by the digest: left out of it at
# their LEGACY value, so that the directories of earlier runs keep their names.
UNNAMED_AT_LEGACY = ("train.lr_schedule", "optimizer.initial_accumulator_value")


def changed_settings(saved: Any, current: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: saved there, current now` for each key of `current` whose saved value differs (a
    key the saved fingerprint lacks has its LEGACY value)."""
    saved = saved if isinstance(saved, dict) else {}
    out = []
    for key in sorted(current):
        a, b = saved.get(key, LEGACY.get(prefix + key)), current[key]
        if isinstance(b, dict):
            out += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def check_same_run(where: Path, saved: Any, current: dict[str, Any]) -> None:
    """Raise CheckpointError (naming `where`) when `saved` is another run's fingerprint."""
    diff = changed_settings(saved, current)
    if diff:
        raise CheckpointError(
            f"{where} belongs to a run with another configuration ({'; '.join(diff[:3])}); "
            "it was left untouched: use another output directory, or train.resume=never "
            "to overwrite it"
        )
