"""The Optuna sweeper's settings: `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml holds the
values; this schema types them). The keys of Hydra's Optuna sweeper keep their meaning."""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.arnn_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    direction: str = MISSING  # maximize (train.py returns the best validation accuracy)
    study_name: str | None = None  # None: the sweep directory's name
    n_trials: int = MISSING  # trials this command adds to the study
    n_jobs: int = MISSING  # trials launched at once, as one batch of the launcher
    sampler: Any = MISSING  # tpe | random | grid, or {_target_: optuna.samplers.X, ...}
    seed: int | None = MISSING  # the sampler's seed (each rerun continues from it)
    multivariate: bool = MISSING  # TPE: model the parameters jointly (and by group)
    n_startup_trials: int = MISSING  # TPE: random trials before the model is used
    pruner: str = MISSING  # none | median | successive_halving | hyperband
    min_steps: int | None = MISSING  # the first budget of a pruned trial (None: steps / eta^2)
    eta: int = MISSING  # the budgets' factor (the pruners' reduction factor)
    seeds: list[int] | None = None  # every trial trains each of these seeds (arnn.points)
    max_failure_rate: float = MISSING  # the study stops when more trials than this failed
    storage: Any = None  # the study lives in <sweep dir>/optuna.journal; a value is refused
    params: dict[str, str] | None = None  # the search space, in Hydra's override syntax
    # settings to try first, each a {key: value} of the space (a preset, a known good point);
    # one already in the study is not tried again
    enqueue: list[dict[str, Any]] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_schema", node=OptunaSweeperConf,
                             provider="arnn_optuna_sweeper")
