"""MNIST-style IDX files of unsigned bytes, plain or gzip: the header is checked against the data
actually present before anything of its size is allocated, and no more than it announces is read
or decompressed."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from arnn.bounded import open_regular
from arnn.data.files import DataError, read_up_to

IDX_UBYTE = 0x08  # type code of unsigned bytes in the IDX header

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# The largest split of the IDX datasets read here (MNIST's and Fashion-MNIST's training split),
# and the largest file it makes (60,000 images of 28 x 28 bytes and the header).
MAX_IDX_COUNT = 60_000
IDX_MAX_BYTES = MAX_IDX_COUNT * 28 * 28 + 16


def read_idx(path: Path, ndim: int, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (plain or gzip), of 1 to
    MAX_IDX_COUNT items of `item_shape` (when given). The header is checked before the body is
    read, and no more than it announces is read or decompressed."""
    header_size = 4 + 4 * ndim
    try:
        raw = open_regular(path, IDX_MAX_BYTES, DataError)
        with gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw as f, raw:
            header = read_up_to(f, header_size)
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
            _check_idx_shape(path, shape, item_shape)
            expected = header_size + int(np.prod(shape, dtype=object))
            # One byte more than the header announces tells a too-long file from a right one.
            body = read_up_to(f, expected - header_size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if header_size + len(body) != expected:
        got = f"{header_size + len(body)}{'+' if len(body) > expected - header_size else ''}"
        raise DataError(
            f"{path}: {got} bytes do not match its header {shape} "
            f"({expected} bytes expected; truncated or corrupt)"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def _check_idx_shape(path: Path, shape: tuple[int, ...], item_shape: tuple[int, ...] | None
                     ) -> None:
    if not 1 <= shape[0] <= MAX_IDX_COUNT:
        raise DataError(f"{path}: its header announces {shape[0]} items; a split of these "
                        f"datasets holds 1 to {MAX_IDX_COUNT}")
    if item_shape is not None and shape[1:] != item_shape:
        raise DataError(f"{path}: items are {shape[1:]}, expected {item_shape}")


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


def load_idx_dataset(files: dict[str, Path], image_shape: tuple[int, int], num_classes: int
                     ) -> dict[str, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 in 0..num_classes-1 of both splits, checked
    for consistency."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], 3, image_shape)
        labels = read_idx(files[f"{split}_labels"], 1)
        if len(images) != len(labels):
            raise DataError(
                f"{files[f'{split}_labels']}: {len(labels)} labels for {len(images)} images "
                f"in {files[f'{split}_images']}"
            )
        if labels.size and labels.max() >= num_classes:
            raise DataError(f"{files[f'{split}_labels']}: label {labels.max()} outside "
                            f"0..{num_classes - 1} (dataset.num_classes={num_classes})")
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels.astype(np.int64)
    return out


