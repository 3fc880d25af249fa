"""The plugin class Hydra instantiates for `hydra/sweeper=grid`; the logic is in `_impl`."""

from __future__ import annotations

from typing import Any

from hydra.errors import ConfigCompositionException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from arnn.config import composition_error
from arnn.errors import UserError, exit_with


class GridSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None,
                 params: dict[str, str] | None = None) -> None:
        from ._impl import GridSweeperImpl

        self.sweeper = GridSweeperImpl(max_batch_size=max_batch_size, params=params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self.sweeper.sweep(arguments)
        except ConfigCompositionException as e:  # a job's value of the wrong type: one line
            exit_with(composition_error(e))
        except UserError as e:  # a sweep directory another sweep holds: one line, exit 2
            exit_with(e)
