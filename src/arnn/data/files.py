"""Readers for the on-disk formats: MNIST-style IDX files and CIFAR-10 python-pickle batches.

Files are validated by format (magic number, header, size, shapes, label range), not by checksum,
so a small file set in the real format loads through the same code as the real one. Every
problem is a `DataError` whose message names the file. Nothing in a file can run code: CIFAR-10
pickles go through an unpickler that knows exactly the globals a real batch uses, and an IDX
header is checked against the data actually present before anything of its size is allocated.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arnn.errors import UserError


class DataError(UserError):
    """A dataset that cannot be found or read; the message says what and where."""


IDX_UBYTE = 0x08  # type code of unsigned bytes in the IDX header

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]


def _read_up_to(f: Any, size: int) -> bytes:
    """At most `size` bytes, in chunks: memory grows with the data present, never with a size
    a header claims."""
    chunks, left = [], size
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (plain or gzip)."""
    header_size = 4 + 4 * ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            header = _read_up_to(f, header_size)
            if len(header) < 4 or header[:3] != bytes((0, 0, IDX_UBYTE)) or header[3] != ndim:
                raise DataError(
                    f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                    f"(magic number {header[:4].hex() or 'missing'}, expected 000008{ndim:02x})"
                )
            if len(header) < header_size:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(
                int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
            )
            expected = header_size + int(np.prod(shape, dtype=object))
            # One byte more than the header announces tells a too-long file from a right one.
            body = _read_up_to(f, expected - header_size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if header_size + len(body) != expected:
        got = f"{header_size + len(body)}{'+' if len(body) > expected - header_size else ''}"
        raise DataError(
            f"{path}: {got} bytes do not match its header {shape} "
            f"({expected} bytes expected; truncated or corrupt)"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
        if candidate.exists():
            raise DataError(f"{candidate}: not a regular file")
    return None


def find_idx_files(root: Path, torchvision_name: str) -> dict[str, Path] | None:
    """The four IDX files directly in `root` or in torchvision's layout
    root/<torchvision_name>/raw (torchvision_name: MNIST or FashionMNIST)."""
    for folder in (root, root / torchvision_name / "raw"):
        found = {key: _find(folder, name) for key, name in MNIST_FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def load_idx_dataset(files: dict[str, Path], image_shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of both splits, checked for consistency."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], 3)
        labels = read_idx(files[f"{split}_labels"], 1)
        if images.shape[1:] != image_shape:
            raise DataError(
                f"{files[f'{split}_images']}: images are {images.shape[1:]}, expected {image_shape}"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{files[f'{split}_labels']}: {len(labels)} labels for {len(images)} images "
                f"in {files[f'{split}_images']}"
            )
        if labels.size and labels.max() > 9:
            raise DataError(f"{files[f'{split}_labels']}: label {labels.max()} outside 0..9")
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels.astype(np.int64)
    return out


# A real batch is 30.7 MB; a larger file is refused before it is read.
CIFAR_BATCH_MAX_BYTES = 64 << 20


class _RefusedGlobal(Exception):
    pass


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstruction as a pickle starts it: an empty plain ndarray whose contents
    the next opcode fills in (and numpy checks against the shape)."""
    if subtype is not np.ndarray or shape != (0,) or dtype not in (b"b", "b"):
        raise _RefusedGlobal(
            f"numpy array reconstruction of {subtype!r} with {shape!r}, {dtype!r}"
        )
    return np._core.multiarray._reconstruct(np.ndarray, (0,), b"b")


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array reconstruction: a view of bytes already read from the file."""
    if not isinstance(buffer, (bytes, bytearray, pickle.PickleBuffer)) or order not in "CF":
        raise _RefusedGlobal(f"numpy frombuffer of {type(buffer).__name__}, order {order!r}")
    return np.frombuffer(buffer, dtype=_plain_dtype(dtype)).reshape(shape, order=order)


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _RefusedGlobal(f"numpy dtype {dtype} (holds Python objects)")
    return dtype


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """How protocol-2 pickles written by Python 3 store bytes: _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _RefusedGlobal(f"_codecs.encode with {type(text).__name__}, {encoding!r}")
    return text.encode("latin1")


# Exactly the globals a real batch uses: numpy's array reconstruction (numpy 1 and 2 spell its
# module differently; protocol 5 uses frombuffer) and dtype, and the bytes encoding of Python 3
# protocol-2 pickles. Each is wrapped to accept only the arguments a batch gives it.
_CIFAR_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle batch: images (N, 32, 32, 3) uint8 (height, width, channel) and
    labels (N,) int64. Read through an unpickler that refuses every global a real batch does not
    use, so nothing from the file runs."""
    try:
        with open(path, "rb") as f:
            raw = _read_up_to(f, CIFAR_BATCH_MAX_BYTES + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > CIFAR_BATCH_MAX_BYTES:
        raise DataError(
            f"{path}: larger than {CIFAR_BATCH_MAX_BYTES >> 20} MB; a CIFAR-10 batch is 31 MB"
        )
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as e:
        raise DataError(
            f"{path}: refused: the pickle asks for {e}, which a CIFAR-10 batch does not use; "
            "nothing from it was run"
        ) from None
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds on bad input
        raise DataError(
            f"{path}: not a readable CIFAR-10 pickle batch ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: not a CIFAR-10 batch (needs the keys b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if len(labels) != len(data) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: {len(labels)} labels in 0..9 expected for {len(data)} images")
    # Stored channel-major (1024 R, 1024 G, 1024 B); turn into (N, H, W, C).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for split, names in (("train", CIFAR10_TRAIN), ("test", CIFAR10_TEST)):
        parts = [read_cifar_batch(folder / name) for name in names]
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


def download_or_explain(
    fetch: Callable[[], None], what: str, expected: list[str], where: str, download: bool
) -> None:
    """Run `fetch` (a torchvision download) or stop with one message that says exactly which
    files are expected where, and how to point the runner at them."""
    hint = (
        f"{what}: files not found. Expected {', '.join(expected)} in {where}. "
        f"Put them there, or point data_dir=/path (or ARNN_DATA_DIR) at the folder holding them"
    )
    if not download:
        raise DataError(hint + " (dataset.download=false).")
    try:
        fetch()
    except Exception as e:  # noqa: BLE001 - any network failure ends the same way
        raise DataError(f"{hint}. Download failed: {type(e).__name__}: {e}") from None
