"""The grid sweeper's settings: `hydra/sweeper=grid` (conf/hydra/sweeper/grid.yaml holds the
values; this schema types them). The same as Hydra's basic sweeper's."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.arnn_grid_sweeper.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None  # jobs launched at once (None: all of them)
    params: dict[str, str] | None = None  # the grid, as the basic sweeper's


ConfigStore.instance().store(group="hydra/sweeper", name="grid_schema", node=GridSweeperConf,
                             provider="arnn_grid_sweeper")
