"""The plugin class Hydra instantiates for `hydra/sweeper=halving`; the logic is in `_impl`."""

from __future__ import annotations

from typing import Any

from hydra.errors import ConfigCompositionException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from arnn.config import composition_error
from arnn.errors import UserError, exit_with


class HalvingSweeper(Sweeper):
    def __init__(self, params: dict[str, str] | None = None, min_steps: int = 1000, eta: int = 3,
                 metric: str = "val_accuracy") -> None:
        from ._impl import HalvingSweeperImpl

        self.sweeper = HalvingSweeperImpl(params, min_steps, eta, metric)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self.sweeper.sweep(arguments)
        except ConfigCompositionException as e:  # a job's value of the wrong type: one line
            exit_with(composition_error(e))
        except UserError as e:  # a bad setting or record: one line, exit 2, as train.py's
            exit_with(e)
