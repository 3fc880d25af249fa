"""The plugin class Hydra instantiates for `hydra/sweeper=halving`; the logic is in `_impl`."""

from __future__ import annotations

from arnn import sweeps


class HalvingSweeper(sweeps.ThinSweeper):
    def __init__(self, params: dict[str, str] | None = None, min_steps: int = 1000, eta: int = 3,
                 metric: str = "val_accuracy") -> None:
        from ._impl import HalvingSweeperImpl

        self.sweeper = HalvingSweeperImpl(params, min_steps, eta, metric)
