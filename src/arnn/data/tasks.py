"""Tasks: datasets held on the training device as raw uint8 tensors and turned into (T, m)
sequences one batch at a time.

A `SequenceTask` stores each split as (N, T0, m) uint8 (MNIST 47 MB, CIFAR-10 150 MB) and
builds float sequences per batch on the device: scale and standardise, optionally permute the
steps (pMNIST), optionally append fresh Gaussian noise steps (noise-padded CIFAR-10). Batches are
drawn by indexing the device tensors; no DataLoader, no worker processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from arnn.data.files import (
    CIFAR10_FOLDER,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    MNIST_FILES,
    DataError,
    cifar10_missing,
    download_or_explain,
    find_idx_files,
    load_cifar10,
    load_idx_dataset,
)
from arnn.errors import invalid
from arnn.storage import write_atomic

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's package


def pixel_permutation(num_pixels: int, seed: int) -> Tensor:
    """The fixed pMNIST permutation: a bijection of all pixel positions drawn from `seed`."""
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


class SequenceTask:
    """A classification task over sequences (B, T, m), with both splits on `device`."""

    def __init__(
        self,
        name: str,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        *,
        val: tuple[np.ndarray, np.ndarray] | None = None,
        scale: float,
        mean: np.ndarray,
        std: np.ndarray,
        device: torch.device,
        permutation: Tensor | None = None,
        noise_steps: int = 0,
        noise_seed: int = 0,
        num_classes: int = 10,
    ) -> None:
        """train/val/test: (images (N, T0, m) uint8, labels (N,)); no val: an empty one.
        Model input per step: (stored * scale - mean) / std, with mean and std of length m."""
        self.name, self.device, self.num_classes = name, device, num_classes
        train_x, test_x = train[0], test[0]
        self.input_size = train_x.shape[2]
        self.seq_len = train_x.shape[1] + noise_steps
        self.mean, self.std = mean, std
        self._mul = torch.tensor(scale / std, dtype=torch.float32, device=device)
        self._add = torch.tensor(-mean / std, dtype=torch.float32, device=device)
        self.permutation = permutation.to(device) if permutation is not None else None
        self.noise_steps, self.noise_seed = noise_steps, noise_seed
        self.train_x = torch.as_tensor(np.ascontiguousarray(train_x)).to(device)
        self.train_y = torch.as_tensor(train[1], dtype=torch.int64).to(device)
        if val is None:
            val = (test_x[:0], test[1][:0])
        # The evaluated splits: (images, labels, seed of their padding noise).
        self.splits = {
            name: (torch.as_tensor(np.ascontiguousarray(x)).to(device),
                   torch.as_tensor(y, dtype=torch.int64).to(device), noise_seed + offset)
            for offset, (name, (x, y)) in enumerate((("test", test), ("val", val)))
        }
        # Training noise is fresh on every use; an evaluated split's noise restarts from its
        # seed for each evaluation, so evaluations are repeatable.
        self.train_noise = torch.Generator(device=device)
        self.eval_noise = torch.Generator(device=device)

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    @property
    def num_test(self) -> int:
        return len(self.splits["test"][1])

    @property
    def num_val(self) -> int:
        return len(self.splits["val"][1])

    def seed(self, seed: int) -> None:
        self.train_noise.manual_seed(seed)

    def sequences(self, raw: Tensor, noise: torch.Generator) -> Tensor:
        """Stored examples (B, T0, m) -> float sequences (B, T, m); padding drawn from `noise`."""
        x = torch.addcmul(self._add, raw, self._mul)  # one kernel: uint8 -> scaled float32
        if self.permutation is not None:
            x = x[:, self.permutation]
        if self.noise_steps:
            pad = torch.randn(
                x.shape[0], self.noise_steps, self.input_size, generator=noise, device=x.device
            )
            x = torch.cat([x, pad], dim=1)
        return x

    def train_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return self.sequences(self.train_x[index], self.train_noise), self.train_y[index]

    def eval_batches(self, batch_size: int, split: str = "test"
                     ) -> Iterator[tuple[Tensor, Tensor]]:
        """The split (`test` or `val`) in order, its padding noise drawn afresh from its seed."""
        x, y, seed = self.splits[split]
        self.eval_noise.manual_seed(seed)
        for start in range(0, len(y), batch_size):
            sl = slice(start, start + batch_size)
            yield self.sequences(x[sl], self.eval_noise), y[sl]

    def state_dict(self) -> dict[str, Any]:
        return {"train_noise": self.train_noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_noise.set_state(state["train_noise"])

    def save_artifacts(self, run_dir: Path) -> None:
        """Write what a run's result depends on (the pMNIST permutation) into the run dir."""
        if self.permutation is not None:
            perm = self.permutation.cpu().tolist()
            write_atomic(run_dir / "permutation.json", json.dumps(perm).encode())


Split = tuple[np.ndarray, np.ndarray]  # images, labels


def split_validation(images: np.ndarray, labels: np.ndarray, size: int | float, seed: int
                     ) -> tuple[Split, Split | None]:
    """(training part, validation part) of a training split: `size` examples (an int) or that
    fraction of it (a float in (0, 1)), stratified by class and drawn from `seed` alone, so that
    every job of a sweep, whatever its model or seed, holds out the same examples. 0: no
    validation part (None)."""
    from sklearn.model_selection import train_test_split

    if size == 0:
        return (images, labels), None
    n, classes = len(labels), len(np.unique(labels))
    count = size if isinstance(size, int) else round(size * n)
    if not classes <= count <= n - classes:
        raise invalid("dataset.val_size", size, f"the training split has {n} examples of "
                      f"{classes} classes: hold out {classes} to {n - classes} (or 0: none)")
    train, val = train_test_split(np.arange(n), test_size=count, random_state=seed,
                                  stratify=labels)
    train, val = np.sort(train), np.sort(val)  # the files' order, as without a split
    return (images[train], labels[train]), (images[val], labels[val])


def _limit(split: tuple[np.ndarray, np.ndarray], limit: int | None) -> tuple[np.ndarray, ...]:
    return split if limit is None else (split[0][:limit], split[1][:limit])


def _digits(cfg: DictConfig) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=cfg.test_fraction,
        random_state=cfg.split_seed,
        stratify=digits.target,
    )
    return {"train_images": x_train, "train_labels": y_train,
            "test_images": x_test, "test_labels": y_test}


def _idx(cfg: DictConfig, root: Path, torchvision_name: str) -> dict[str, np.ndarray]:
    files = find_idx_files(root, torchvision_name)
    if files is None:
        import torchvision

        fetch_cls = getattr(torchvision.datasets, torchvision_name)
        download_or_explain(
            lambda: fetch_cls(root=str(root), train=True, download=True),
            cfg.name,
            [f"{n}[.gz]" for n in MNIST_FILES.values()],
            f"{root} (or {root / torchvision_name / 'raw'})",
            cfg.download,
        )
        files = find_idx_files(root, torchvision_name)
        if files is None:
            raise DataError(f"{cfg.name}: download finished but the IDX files are not in {root}")
    return load_idx_dataset(files, (28, 28))


def _cifar10(cfg: DictConfig, root: Path) -> dict[str, np.ndarray]:
    folder = root / CIFAR10_FOLDER
    if cifar10_missing(folder):
        import torchvision

        download_or_explain(
            lambda: torchvision.datasets.CIFAR10(root=str(root), train=True, download=True),
            cfg.name,
            CIFAR10_TRAIN + CIFAR10_TEST,
            str(folder),
            cfg.download,
        )
    return load_cifar10(folder)


def _fashion_mnist(cfg: DictConfig, root: Path) -> dict[str, np.ndarray]:
    if not cfg.path and not find_idx_files(root, "FashionMNIST"):
        if FASHION_MNIST_SYSTEM_DIR.is_dir():
            root = FASHION_MNIST_SYSTEM_DIR
    return _idx(cfg, root, "FashionMNIST")


Reader = Callable[[DictConfig, Path], dict[str, np.ndarray]]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the registry: conf/dataset/<name>.yaml selects the spec registered under
    <name> (the names allowed on the command line derive from the registry)."""

    reader: Reader  # both splits as images (N, H, W[, C]) uint8
    scale: float  # maps the stored values to [0, 1]
    settings: tuple[str, ...] = ()  # dataset keys only this dataset has (null for the others)
    permuted: bool = False  # one fixed permutation of the steps (dataset.permutation_seed)
    noise_padded: bool = False  # one image row per step, then noise up to seq_len


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(lambda cfg, root: _digits(cfg), 1.0 / 16,
                          settings=("split_seed", "test_fraction")),
    "mnist": DatasetSpec(lambda cfg, root: _idx(cfg, root, "MNIST"), 1.0 / 255),
    "pmnist": DatasetSpec(lambda cfg, root: _idx(cfg, root, "MNIST"), 1.0 / 255,
                          settings=("permutation_seed",), permuted=True),
    "fashion_mnist": DatasetSpec(_fashion_mnist, 1.0 / 255),
    "cifar10": DatasetSpec(_cifar10, 1.0 / 255),
    "noise_cifar10": DatasetSpec(_cifar10, 1.0 / 255, settings=("noise_seed",),
                                 noise_padded=True),
    "noise_digits": DatasetSpec(lambda cfg, root: _digits(cfg), 1.0 / 16,
                                settings=("split_seed", "test_fraction", "noise_seed"),
                                noise_padded=True),
    "noise_mnist": DatasetSpec(lambda cfg, root: _idx(cfg, root, "MNIST"), 1.0 / 255,
                               settings=("noise_seed",), noise_padded=True),
}


def build_task(cfg: DictConfig, data_dir: str | Path, device: torch.device) -> SequenceTask:
    """The task named by the dataset config, loaded onto `device`."""
    if cfg.name not in DATASETS:
        raise invalid("dataset", cfg.name, DATASETS)
    spec = DATASETS[cfg.name]
    arrays = spec.reader(cfg, Path(cfg.path if cfg.path else data_dir).expanduser())
    (train_images, train_labels), val = split_validation(
        arrays["train_images"], arrays["train_labels"], cfg.val_size, cfg.val_seed)
    channels = train_images.shape[3] if train_images.ndim == 4 else 1
    # Per-channel statistics of the training part (before train_limit; never the validation
    # examples), in [0, 1] units.
    if cfg.standardize:
        values = train_images.reshape(-1, channels).astype(np.float64) * spec.scale
        mean, std = values.mean(axis=0), values.std(axis=0)
        std[std == 0] = 1.0
    else:
        mean, std = np.zeros(channels), np.ones(channels)

    def as_sequences(images: np.ndarray) -> np.ndarray:
        if spec.noise_padded:  # one image row per step: e.g. 32 pixels x 3 channels
            return images.reshape(len(images), images.shape[1], -1)
        return images.reshape(len(images), -1, channels)  # one pixel per step, scan-line order

    train = _limit((as_sequences(train_images), train_labels), cfg.train_limit)
    test = _limit((as_sequences(arrays["test_images"]), arrays["test_labels"]), cfg.test_limit)
    val = None if val is None else (as_sequences(val[0]), val[1])
    steps, step_size = train[0].shape[1:]
    repeat = step_size // channels  # a row step holds 32 pixels, each with the same statistics
    noise_steps = cfg.seq_len - steps if spec.noise_padded else 0
    if noise_steps < 0:
        raise invalid("dataset.seq_len", cfg.seq_len,
                      f"{cfg.name} needs at least its {steps} image rows")
    top = max(int(labels.max()) for labels in (train[1], test[1]) if len(labels))  # val: in train
    if top >= cfg.num_classes:
        raise invalid("dataset.num_classes", cfg.num_classes,
                      f"the labels of {cfg.name} go up to {top}; it needs at least {top + 1}")
    if steps + noise_steps != cfg.seq_len or step_size != cfg.input_size:
        raise DataError(
            f"dataset {cfg.name}: the files give {steps} steps of {step_size} values but the "
            f"config says seq_len={cfg.seq_len}, input_size={cfg.input_size}"
        )
    return SequenceTask(
        cfg.name,
        train,
        test,
        val=val,
        scale=spec.scale,
        mean=np.tile(mean, repeat),
        std=np.tile(std, repeat),
        device=device,
        permutation=pixel_permutation(steps, cfg.permutation_seed) if spec.permuted else None,
        noise_steps=noise_steps,
        noise_seed=cfg.noise_seed if noise_steps else 0,
        num_classes=cfg.num_classes,
    )
