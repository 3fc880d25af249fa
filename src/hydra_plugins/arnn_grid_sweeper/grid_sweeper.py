"""The plugin class Hydra instantiates for `hydra/sweeper=grid`; the logic is in `_impl`."""

from __future__ import annotations

from arnn import sweeps


class GridSweeper(sweeps.ThinSweeper):
    def __init__(self, max_batch_size: int | None = None,
                 params: dict[str, str] | None = None) -> None:
        from ._impl import GridSweeperImpl

        self.sweeper = GridSweeperImpl(max_batch_size=max_batch_size, params=params)
