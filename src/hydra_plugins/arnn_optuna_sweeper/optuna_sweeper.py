"""The plugin class Hydra instantiates for `hydra/sweeper=optuna`; the logic is in `_impl`."""

from __future__ import annotations

from typing import Any

from arnn import sweeps


class OptunaSweeper(sweeps.ThinSweeper):
    def __init__(self, **settings: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**settings)
