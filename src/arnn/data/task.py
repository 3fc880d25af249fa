"""A task held on the training device as raw uint8 tensors and turned into (T, m) sequences one
batch at a time.

A `SequenceTask` stores each split as (N, T0, m) uint8 (MNIST 47 MB, CIFAR-10 150 MB) and
builds float sequences per batch on the device: scale and standardise, optionally permute the
steps (pMNIST), optionally append fresh Gaussian noise steps (noise-padded CIFAR-10). Batches are
drawn by indexing the device tensors; no DataLoader, no worker processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from arnn.storage import Folder


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

    def save_artifacts(self, folder: Folder) -> None:
        """Write what a run's result depends on (the pMNIST permutation) into the run dir."""
        if self.permutation is not None:
            perm = self.permutation.cpu().tolist()
            folder.write_atomic("permutation.json", json.dumps(perm).encode())
