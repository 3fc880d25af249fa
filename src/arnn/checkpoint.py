"""Atomic checkpoints: a kill at any moment leaves either the old or the new file, whole."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file. The file is left as is."""


def save_atomic(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX within one file system


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated zips, pickles, ... all end here
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); it was left untouched: "
            "move it away to start over, or use train.resume=never"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not an arnn checkpoint; left untouched")
    return state


def check_compatible(path: Path, saved: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Refuse a checkpoint whose tensors do not fit the model built from the current config."""
    current = model.state_dict()
    if saved.keys() != current.keys():
        raise CheckpointError(
            f"checkpoint {path} holds a different model (parameters {sorted(saved)}), "
            f"not {sorted(current)}; left untouched"
        )
    for key, tensor in current.items():
        if saved[key].shape != tensor.shape:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {key} is "
                f"{tuple(saved[key].shape)} there, {tuple(tensor.shape)} here; left untouched"
            )
