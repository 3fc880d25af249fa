"""The halving sweeper's settings: `hydra/sweeper=halving` (conf/hydra/sweeper/halving.yaml holds
the values; this schema types them)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from arnn.results import TEST_METRICS, VALIDATION_METRICS

METRICS = VALIDATION_METRICS + TEST_METRICS


@dataclass
class HalvingSweeperConf:
    _target_: str = "hydra_plugins.arnn_halving_sweeper.halving_sweeper.HalvingSweeper"
    params: dict[str, str] | None = None  # the grid, as the basic sweeper's
    min_steps: int = MISSING  # budget of rung 0
    eta: int = MISSING  # keep the best 1/eta, multiply the budget by eta, each rung
    metric: str = MISSING  # one of METRICS


ConfigStore.instance().store(group="hydra/sweeper", name="halving_schema",
                             node=HalvingSweeperConf, provider="arnn_halving_sweeper")
