"""Checkpoints: written atomically, read within bounds and without running anything from the
file.

File format (version 2): one header line `arnn-checkpoint 2 sha256=<digest>` followed by a
`torch.save` archive whose SHA-256 is that digest. The archive holds tensors and plain Python
values only (dicts, lists, tuples, numbers, strings), and is read with
`torch.load(weights_only=True)`: a file that asks for any other object is refused, and a
truncated or altered file fails its digest. Before anything is unpickled, the file must be a
regular file no larger than the run's model can make (`max_bytes`), and the archive's entries
stored uncompressed (as torch.save writes them) within that size, so that a small file cannot
inflate into gigabytes. Files of version 1 (a bare archive without a digest, written before
2026-11) are no longer read.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arnn.bounded import read_regular
from arnn.errors import UserError
from arnn.storage import Folder

CHECKPOINT = Path("checkpoints") / "last.pt"  # in a run directory
BEST_CHECKPOINT = Path("checkpoints") / "best.pt"  # the state at the best validation accuracy
HEADER = re.compile(rb"arnn-checkpoint 2 sha256=([0-9a-f]{64})\n")
ZIP_MAGIC = b"PK\x03\x04"
UNTOUCHED = "it was left untouched: move it away to start over, or use train.resume=never"
MAX_PICKLE_BYTES = 1 << 20  # the archive's data.pkl: RNG states, evaluations, small values


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file. The file is left as is."""


def save_atomic(state: dict[str, Any], folder: Folder, name: Path | str) -> None:
    """`state` as the checkpoint `name` of `folder` (a run directory)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    archive = buffer.getvalue()
    header = f"arnn-checkpoint 2 sha256={hashlib.sha256(archive).hexdigest()}\n".encode()
    folder.write_atomic(name, header + archive)


def max_checkpoint_bytes(model: torch.nn.Module, num_train: int, steps: int) -> int:
    """The largest checkpoint a run of `model` writes: the weights, at most three optimizer
    tensors per weight (RMSprop centred with momentum) and the weights at the best validation
    accuracy, the sampler's order of the training set, one evaluation per step, and room for
    the RNG states and the archive's own records."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 5 * weights + 8 * num_train + 64 * steps + (4 << 20)


def _check_archive(path: Path, archive: bytes, max_bytes: int) -> None:
    """A zip whose entries are stored (torch.save never compresses) and fit `max_bytes`."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(archive)).infolist()
    except Exception as e:  # noqa: BLE001 - zipfile raises many kinds on a damaged directory
        raise CheckpointError(f"checkpoint {path} is refused (not a readable archive: "
                              f"{type(e).__name__}); {UNTOUCHED}") from None
    total = sum(e.file_size for e in entries)
    pickles = [e for e in entries if e.filename.endswith(".pkl")]
    if (any(e.compress_type != zipfile.ZIP_STORED for e in entries) or total > max_bytes
            or any(e.file_size > MAX_PICKLE_BYTES for e in pickles)):
        raise CheckpointError(
            f"checkpoint {path} is refused (its archive holds {total} bytes or compressed "
            f"entries; this run's checkpoints hold at most {max_bytes} bytes, stored); {UNTOUCHED}"
        )


def load_checkpoint(path: Path, max_bytes: int) -> dict[str, Any]:
    raw = read_regular(path, max_bytes + 200, CheckpointError)
    header = HEADER.match(raw)
    if header is None:
        version_1 = " (version 1, written before checkpoints had a digest: no longer read)"
        raise CheckpointError(f"checkpoint {path} is not an arnn checkpoint"
                              f"{version_1 if raw.startswith(ZIP_MAGIC) else ''}; {UNTOUCHED}")
    archive = raw[header.end():]
    if hashlib.sha256(archive).hexdigest() != header.group(1).decode():
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated (its SHA-256 does not match its "
            f"header); {UNTOUCHED}"
        )
    _check_archive(path, archive, max_bytes)
    try:
        state = torch.load(io.BytesIO(archive), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - refused globals, bad records, ... all end here
        refused = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(e))
        what = (f"it asks for {refused.group(1)}, which the weights-only loader refuses"
                if refused else f"unreadable: {type(e).__name__}")
        raise CheckpointError(f"checkpoint {path} is refused ({what}); {UNTOUCHED}") from None
    if not (isinstance(state, dict) and "model" in state and "step" in state
            and isinstance(state.get("fingerprint"), dict)):  # what last.pt and best.pt share
        raise CheckpointError(f"checkpoint {path} is not an arnn checkpoint; {UNTOUCHED}")
    return state


def check_compatible(path: Path, saved: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Refuse a checkpoint whose tensors do not fit the model built from the current config."""
    current = model.state_dict()
    if not isinstance(saved, dict) or saved.keys() != current.keys():
        raise CheckpointError(
            f"checkpoint {path} holds a different model (parameters "
            f"{sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__}), "
            f"not {sorted(current)}; left untouched"
        )
    for key, tensor in current.items():
        value = saved[key]
        if (not isinstance(value, torch.Tensor) or value.shape != tensor.shape
                or value.dtype != tensor.dtype):
            what = (f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                    else type(value).__name__)
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {key} is {what} there, "
                f"{tensor.dtype} {tuple(tensor.shape)} here; left untouched"
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
    """Raises ValueError or TypeError for a state capture_rng cannot have written."""
    kind, keys, *rest = state["numpy"]
    if not (isinstance(keys, torch.Tensor) and keys.shape == (624,) and keys.dtype == torch.int64
            and 0 <= int(keys.min()) and int(keys.max()) < 1 << 32):
        raise ValueError("numpy's RNG state is not 624 words of 32 bits")
    random.setstate(state["python"])
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
