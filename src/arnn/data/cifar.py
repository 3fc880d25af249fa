"""CIFAR-10 python-pickle batches, read through an unpickler that knows exactly the globals a real
batch uses (each replaced by a stand-in that checks its arguments), so that nothing from the file
runs and the arrays are built from exactly the bytes the file holds."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arnn.bounded import read_regular
from arnn.data.files import DataError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]


CIFAR_BATCH_MAX_IMAGES = 10_000  # a real batch holds exactly this many
# A real batch is 30.9 MB (the images, 10,000 labels and file names); written by Python 3 with
# protocol 2 (as make_cifar10.py does) its bytes are latin-1 text in UTF-8, up to twice that.
# Anything larger is refused before it is read.
CIFAR_BATCH_MAX_BYTES = 2 * CIFAR_BATCH_MAX_IMAGES * 3072 + (2 << 20)
# A real batch takes at most ~90,000 pickle operations and ~30,000 memo entries (Python 3's
# protocol 2: three per file name); twice that and more is refused.
MAX_PICKLE_OPS, MAX_PICKLE_MEMO = 200_000, 60_000
# Integer dtypes an array in a batch may have (the images are u1; labels are usually a list).
_INT_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"}


class _Refused(Exception):
    pass


# `numpy.ndarray` as a pickle names it: only ever the first argument of _reconstruct. Never the
# class itself, which, called with a buffer and strides, makes views of memory it does not own.
_NDARRAY = object()


class _Dtype:
    """Stands for `numpy.dtype(name)` while the pickle is read: numpy never sees the pickle's
    arguments or state (a crafted dtype state is how a 200-byte file crashes numpy)."""

    def __init__(self, name: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(name, str) or name not in _INT_DTYPES:
            raise _Refused(f"numpy dtype {name!r} (a batch holds integer arrays only)")
        self.name, self.order = name, "|"

    def __setstate__(self, state: Any) -> None:
        plain = isinstance(state, tuple) and len(state) == 8 and state[0] in (3, 4) and (
            state[1] in ("|", "<", ">", "=") and state[2:] == (None, None, None, -1, -1, 0))
        if not plain:
            raise _Refused(f"numpy dtype state {state!r:.80}")
        self.order = state[1]

    def real(self) -> np.dtype:
        return np.dtype(self.name).newbyteorder(self.order if self.order != "|" else "=")


class _Array:
    """Stands for a numpy array while the pickle is read; made real by `real()` only after its
    shape, dtype and bytes agree exactly (no views, no strides, no sizes the bytes lack)."""

    shape: Any = None
    dtype: Any = None
    raw: Any = None
    fortran: Any = False

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _Refused("numpy array state of an unknown layout")
        _, self.shape, self.dtype, self.fortran, self.raw = state

    def real(self, what: str) -> np.ndarray:
        shape, dtype, raw = self.shape, self.dtype, self.raw
        ok_shape = isinstance(shape, tuple) and len(shape) <= 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1 << 24 for n in shape)
        if not (ok_shape and isinstance(dtype, _Dtype) and isinstance(raw, bytes | bytearray)
                and isinstance(self.fortran, bool)):
            raise _Refused(f"{what}: an array that is not a plain integer array")
        dt = dtype.real()
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise _Refused(f"{what}: an array of shape {shape} {dt} with {len(raw)} bytes")
        order = "F" if self.fortran else "C"
        return np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order=order).astype(
            dt.newbyteorder("="), order="C")


class _CifarUnpickler(pickle._Unpickler):  # the Python one: operations and memo can be bounded
    """Knows exactly the globals a real batch uses (numpy's array reconstruction, spelt as
    numpy 1 and 2 and protocol 5 spell it, numpy's dtype, and the bytes encoding of Python 3's
    protocol-2 pickles), each replaced by a stand-in that checks its arguments; counts
    operations and memo entries, and the bytes that `_codecs.encode` makes."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.memo = _BoundedMemo()
        self.ops, self.encoded, self.budget = 0, 0, len(data)

    def find_class(self, module: str, name: str) -> Any:
        known = {"_reconstruct": self._reconstruct, "_frombuffer": self._frombuffer,
                 "ndarray": _NDARRAY, "dtype": _Dtype, "encode": self._latin1}
        if (module, name) not in _CIFAR_GLOBALS:
            raise _Refused(f"{module}.{name}")
        return known[name]

    @staticmethod
    def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _Array:
        if subtype is not _NDARRAY or shape != (0,) or dtype not in (b"b", "b"):
            raise _Refused(f"numpy array reconstruction of {subtype!r:.40} with {shape!r:.40}")
        return _Array()

    @staticmethod
    def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _Array:
        array = _Array()
        raw = bytes(buffer) if isinstance(buffer, pickle.PickleBuffer) else buffer
        array.__setstate__((1, shape, dtype, order == "F", raw))
        return array

    def _latin1(self, text: Any, encoding: Any = "latin1") -> bytes:
        if not isinstance(text, str) or encoding != "latin1":
            raise _Refused(f"_codecs.encode with {type(text).__name__}, {encoding!r:.20}")
        self.encoded += len(text)
        if self.encoded > self.budget:  # a shared string encoded again and again
            raise _Refused("more bytes encoded than the file holds")
        return text.encode("latin1")


def _counted(operation: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: _CifarUnpickler) -> None:
        self.ops += 1
        if self.ops > MAX_PICKLE_OPS:
            raise _Refused(f"more than {MAX_PICKLE_OPS} pickle operations")
        operation(self)
    return run


_CifarUnpickler.dispatch = {code: _counted(op) for code, op in _CifarUnpickler.dispatch.items()}


class _BoundedMemo(dict):
    def __setitem__(self, key: Any, value: Any) -> None:
        if len(self) >= MAX_PICKLE_MEMO and key not in self:
            raise _Refused(f"more than {MAX_PICKLE_MEMO} pickle memo entries")
        super().__setitem__(key, value)


_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


def _labels(value: Any, count: int, classes: int) -> np.ndarray:
    """A list of `count` Python ints in 0..classes-1 (or an integer array of them)."""
    if isinstance(value, _Array):
        labels = value.real("labels")
    elif isinstance(value, list) and all(type(v) is int for v in value):
        if any(not 0 <= v < classes for v in value):
            raise _Refused(f"labels outside 0..{classes - 1}")
        labels = np.array(value, dtype=np.int64)
    else:
        raise _Refused("labels that are not a list of integers")
    if labels.shape != (count,) or (count and not 0 <= labels.min() <= labels.max() < classes):
        raise _Refused(f"labels {labels.shape} in 0..{classes - 1} expected for {count} images")
    return labels.astype(np.int64)


def read_cifar_batch(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle batch: images (N, 32, 32, 3) uint8 (height, width, channel) and
    labels (N,) int64, N <= 10,000. Read through an unpickler that refuses every global a real
    batch does not use, so nothing from the file runs, and whose arrays are built by this
    function from exactly the bytes the file holds."""
    raw = read_regular(path, CIFAR_BATCH_MAX_BYTES, DataError)
    try:
        batch = _CifarUnpickler(raw).load()
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise _Refused("no b'data' and b'labels' (not a CIFAR-10 batch)")
        data = batch[b"data"]
        data = data.real("data") if isinstance(data, _Array) else None
        if data is None or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise _Refused("data that is not uint8 (N, 3072)")
        if len(data) > CIFAR_BATCH_MAX_IMAGES:
            raise _Refused(f"{len(data)} images; a batch holds at most {CIFAR_BATCH_MAX_IMAGES}")
        labels = _labels(batch[b"labels"], len(data), num_classes)
    except _Refused as e:
        raise DataError(f"{path}: refused: the pickle holds {e}, which a CIFAR-10 batch does not; "
                        "nothing from it was run") from None
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds on bad input
        raise DataError(
            f"{path}: not a readable CIFAR-10 pickle batch ({type(e).__name__}: {e})"
        ) from None
    # Stored channel-major (1024 R, 1024 G, 1024 B); turn into (N, H, W, C).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(folder: Path, num_classes: int = 10) -> dict[str, np.ndarray]:
    out = {}
    for split, names in (("train", CIFAR10_TRAIN), ("test", CIFAR10_TEST)):
        parts = [read_cifar_batch(folder / name, num_classes) for name in names]
        out[f"{split}_images"] = np.concatenate([p[0] for p in parts])
        out[f"{split}_labels"] = np.concatenate([p[1] for p in parts])
    return out


def cifar10_missing(folder: Path) -> list[str]:
    missing = []
    for name in CIFAR10_TRAIN + CIFAR10_TEST:
        if not (folder / name).is_file():
            if (folder / name).exists():
                raise DataError(f"{folder / name}: not a regular file")
            missing.append(name)
    return missing


