"""Readers for the on-disk formats: MNIST-style IDX files and CIFAR-10 python-pickle batches.

Files are validated by format (magic number, header, size, shapes, label range), not by checksum,
so a small file set in the real format loads through the same code as the real one. Every
problem is a `DataError` whose message names the file.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np


class DataError(RuntimeError):
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


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (plain or gzip)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(magic number {raw[:4].hex() or 'missing'}, expected 000008{ndim:02x})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path}: size {len(raw)} bytes does not match its header {shape} "
            f"({expected} bytes expected; truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
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


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle batch: images (N, 32, 32, 3) uint8 (height, width, channel) and
    labels (N,) int64."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds on bad input
        raise DataError(f"{path}: not a readable CIFAR-10 pickle batch ({e})") from None
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
    return [n for n in CIFAR10_TRAIN + CIFAR10_TEST if not (folder / n).is_file()]


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
