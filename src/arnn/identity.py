"""A run's identity: the settings its numbers depend on, and the check that a run directory
holds the same run before it is resumed or extended.

The fingerprint holds exactly the settings the run has (`arnn.config.settings_of` for the model,
optimizer and dataset), the batch size, gradient clipping and the seed. Not in it: train.steps (a
larger count extends a run), the backend (the same function computed another way), where the
data lives. Compatibility rule: a saved fingerprint is compared on the keys of the current one;
keys it holds beyond them (older versions recorded every setting of a group, e.g. eps for the
LSTM, the datasets' hidden-size tables, train.steps) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from arnn.checkpoint import CheckpointError
from arnn.config import REGISTRIES, settings_of

TRAIN_IDENTITY = ("batch_size", "grad_clip")


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {
        group: {key: data[group][key] for key in settings_of(group, data[group]["name"])}
        for group in REGISTRIES
    }
    out["train"] = {key: data["train"][key] for key in TRAIN_IDENTITY}
    out["seed"] = data["seed"]
    return out


# Settings added after runs were recorded without them: the value that reproduces those runs.
LEGACY = {"dataset.val_size": 0, "dataset.val_seed": 0}


def differences(saved: Any, current: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: saved there, current now` for each key of `current` whose saved value differs (a
    key the saved fingerprint lacks has its LEGACY value)."""
    saved = saved if isinstance(saved, dict) else {}
    out = []
    for key in sorted(current):
        a, b = saved.get(key, LEGACY.get(prefix + key)), current[key]
        if isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def check_same_run(where: Path, saved: Any, current: dict[str, Any]) -> None:
    """Raise CheckpointError (naming `where`) when `saved` is another run's fingerprint."""
    diff = differences(saved, current)
    if diff:
        raise CheckpointError(
            f"{where} belongs to a run with another configuration ({'; '.join(diff[:3])}); "
            "it was left untouched: use another output directory, or train.resume=never "
            "to overwrite it"
        )
