"""Checkpoints: written atomically, read without running anything from the file.

File format (version 2): one header line `arnn-checkpoint 2 sha256=<digest>` followed by a
`torch.save` archive whose SHA-256 is that digest. The archive holds tensors and plain Python
values only (dicts, lists, tuples, numbers, strings), and is read with
`torch.load(weights_only=True)`: a file that asks for any other object is refused, and a
truncated or altered file fails its digest. Files of version 1 (a bare archive, written before
the header existed) load through the same safe loader, which also admits the numpy array and
dtype that version 1 stored for numpy's RNG state.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arnn.errors import UserError
from arnn.storage import write_atomic

CHECKPOINT = Path("checkpoints") / "last.pt"  # in a run directory
HEADER = re.compile(rb"arnn-checkpoint 2 sha256=([0-9a-f]{64})\n")
ZIP_MAGIC = b"PK\x03\x04"
# What version 1 needs beyond tensors: numpy's RNG state was an ndarray of uint32.
_V1_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file. The file is left as is."""


def save_atomic(state: dict[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    archive = buffer.getvalue()
    header = f"arnn-checkpoint 2 sha256={hashlib.sha256(archive).hexdigest()}\n".encode()
    write_atomic(path, header + archive)


def load_checkpoint(path: Path) -> dict[str, Any]:
    untouched = "it was left untouched: move it away to start over, or use train.resume=never"
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({e.strerror}); {untouched}"
        ) from None
    header = HEADER.match(raw)
    if header is not None:
        archive = raw[header.end():]
        if hashlib.sha256(archive).hexdigest() != header.group(1).decode():
            raise CheckpointError(
                f"checkpoint {path} is corrupt or truncated (its SHA-256 does not match its "
                f"header); {untouched}"
            )
        allowed: list[Any] = []
    elif raw.startswith(ZIP_MAGIC):
        archive, allowed = raw, _V1_GLOBALS  # version 1: no digest
    else:
        raise CheckpointError(f"checkpoint {path} is not an arnn checkpoint; {untouched}")
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(io.BytesIO(archive), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zips, refused globals, ... all end here
        refused = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(e))
        what = (f"it asks for {refused.group(1)}, which the weights-only loader refuses"
                if refused else f"unreadable: {type(e).__name__}")
        raise CheckpointError(f"checkpoint {path} is refused ({what}); {untouched}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not an arnn checkpoint; {untouched}")
    return state


def check_compatible(path: Path, saved: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Refuse a checkpoint whose tensors do not fit the model built from the current config."""
    current = model.state_dict()
    if not isinstance(saved, dict) or saved.keys() != current.keys():
        raise CheckpointError(
            f"checkpoint {path} holds a different model (parameters "
            f"{sorted(saved) if isinstance(saved, dict) else type(saved).__name__}), "
            f"not {sorted(current)}; left untouched"
        )
    for key, tensor in current.items():
        if not isinstance(saved[key], torch.Tensor) or saved[key].shape != tensor.shape:
            shape = getattr(saved[key], "shape", type(saved[key]).__name__)
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {key} is "
                f"{tuple(shape) if isinstance(shape, torch.Size) else shape} there, "
                f"{tuple(tensor.shape)} here; left untouched"
            )


def capture_rng() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (what a weights-only load reads)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
