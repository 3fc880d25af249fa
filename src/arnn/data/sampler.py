"""Iteration-based batch sampling: a fresh random order of the training set every epoch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class EpochSampler:
    """Yields index batches (on `device`) that walk a random permutation of range(n); a new
    permutation starts when fewer than a full batch remain (the remainder is dropped). The
    whole state is (generator, permutation, position), so a resumed run draws the same batches."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.batch_size, self.device = n, min(batch_size, n), device
        self.generator = torch.Generator().manual_seed(seed)
        self.order = self._shuffle()
        self.position = 0

    def _shuffle(self) -> Tensor:
        return torch.randperm(self.n, generator=self.generator).to(self.device)

    def next(self) -> Tensor:
        if self.position + self.batch_size > self.n:
            self.order, self.position = self._shuffle(), 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return index

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order.cpu(),
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Raises ValueError for a state that is not a walk through this training set."""
        order, position = state["order"], state["position"]
        if not (isinstance(order, Tensor) and order.dtype == torch.int64
                and order.shape == (self.n,)
                and torch.equal(order.sort().values, torch.arange(self.n))):
            raise ValueError(f"the sampler's order is not a permutation of the {self.n} "
                             "training examples")
        if not (isinstance(position, int) and 0 <= position <= self.n):
            raise ValueError(f"the sampler's position {position!r} is outside 0..{self.n}")
        self.generator.set_state(state["generator"])
        self.order, self.position = order.to(self.device), position
