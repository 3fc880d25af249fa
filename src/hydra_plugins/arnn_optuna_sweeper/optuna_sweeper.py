"""The plugin class Hydra instantiates for `hydra/sweeper=optuna`; the logic is in `_impl`."""

from __future__ import annotations

from typing import Any

from hydra.errors import ConfigCompositionException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from arnn.config import composition_error
from arnn.errors import UserError, exit_with


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self.sweeper.sweep(arguments)
        except ConfigCompositionException as e:  # a trial's value of the wrong type
            exit_with(composition_error(e))
        except UserError as e:  # a bad setting, a study it cannot use: one line, exit 2
            exit_with(e)
