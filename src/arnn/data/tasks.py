"""The datasets: one registry entry each (`DATASETS`: its reader, its own settings, its layout,
whether it follows the paper's protocol, whose presets it takes), and `build_task`, which turns
an entry and its config into a device-resident `SequenceTask`.

Adding a dataset is its entry here, conf/dataset/<name>.yaml and its rows in the docs
(docs/development.md, "Adding a dataset"): the config schema, validation, a run's identity and
the collector's columns derive from the entry's `settings`; a (model, dataset) pair without a
preset of its own takes the presets of `presets_from`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from arnn.data.cifar import (
    CIFAR10_FOLDER,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    cifar10_missing,
    load_cifar10,
)
from arnn.data.files import DataError, download_or_explain
from arnn.data.idx import MNIST_FILES, find_idx_files, load_idx_dataset
from arnn.data.task import SequenceTask, pixel_permutation
from arnn.errors import invalid

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's package

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
    n, classes = len(digits.target), len(np.unique(digits.target))
    held = math.ceil(cfg.test_fraction * n)  # as scikit-learn counts a fraction
    if not classes <= held <= n - classes:
        raise invalid("dataset.test_fraction", cfg.test_fraction,
                      f"holds out {held} of the {n} digits; each split needs one example of "
                      f"each of the {classes} classes: allowed {classes / n:.4f} to "
                      f"{(n - classes) / n:.4f}")
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
            [root, root / torchvision_name, root / torchvision_name / "raw"],
        )
        files = find_idx_files(root, torchvision_name)
        if files is None:
            raise DataError(f"{cfg.name}: download finished but the IDX files are not in {root}")
    return load_idx_dataset(files, (28, 28), cfg.num_classes)


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
            [root],
        )
    return load_cifar10(folder, cfg.num_classes)


def _fashion_mnist(cfg: DictConfig, root: Path) -> dict[str, np.ndarray]:
    if not cfg.path and not find_idx_files(root, "FashionMNIST"):
        if FASHION_MNIST_SYSTEM_DIR.is_dir():
            root = FASHION_MNIST_SYSTEM_DIR
    return _idx(cfg, root, "FashionMNIST")


Reader = Callable[[DictConfig, Path], dict[str, np.ndarray]]
DIGITS_SPLIT = {"split_seed": int, "test_fraction": float}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the registry: conf/dataset/<name>.yaml selects the spec registered under
    <name> (the names allowed on the command line derive from the registry)."""

    reader: Reader  # both splits as images (N, H, W[, C]) uint8
    scale: float  # maps the stored values to [0, 1]
    # dataset settings only this dataset has (null for the others), with their types: the
    # config schema's fields, validation and a run's identity come from here
    settings: dict[str, type] = field(default_factory=dict)
    permuted: bool = False  # one fixed permutation of the steps (dataset.permutation_seed)
    noise_padded: bool = False  # one image row per step, then noise up to seq_len
    paper_steps: int | None = None  # the paper's protocol: this many steps, its intervals
    presets_from: str = "digits"  # whose presets a model takes that has none for this dataset


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(lambda cfg, root: _digits(cfg), 1.0 / 16, DIGITS_SPLIT),
    "mnist": DatasetSpec(lambda cfg, root: _idx(cfg, root, "MNIST"), 1.0 / 255,
                         paper_steps=50_000),
    "pmnist": DatasetSpec(lambda cfg, root: _idx(cfg, root, "MNIST"), 1.0 / 255,
                          {"permutation_seed": int}, permuted=True, paper_steps=50_000,
                          presets_from="mnist"),
    # not a task of the paper: MNIST's protocol and presets
    "fashion_mnist": DatasetSpec(_fashion_mnist, 1.0 / 255, paper_steps=50_000,
                                 presets_from="mnist"),
    "cifar10": DatasetSpec(_cifar10, 1.0 / 255, paper_steps=50_000),
    "noise_cifar10": DatasetSpec(_cifar10, 1.0 / 255, {"noise_seed": int}, noise_padded=True,
                                 paper_steps=10_000, presets_from="cifar10"),
    "noise_digits": DatasetSpec(lambda cfg, root: _digits(cfg), 1.0 / 16,
                                {**DIGITS_SPLIT, "noise_seed": int}, noise_padded=True),
    "noise_mnist": DatasetSpec(lambda cfg, root: _idx(cfg, root, "MNIST"), 1.0 / 255,
                               {"noise_seed": int}, noise_padded=True),
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
