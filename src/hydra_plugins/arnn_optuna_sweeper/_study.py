"""The study: its search space in Hydra's override syntax, its sampler and pruner, the sweeper's
settings checked, and its identity.

A study's identity (`<sweep dir>/study.json`) is what makes its trials comparable: what it
optimises (direction and metric), the search space, the settings held fixed across its trials
(the command line's other overrides, the seeds, the final budget and the rungs), and its name.
The first command of a study writes it; every later one must be the same study, else it is
refused in one line (its trials would be mixed with others'). The name is drawn at random once
and kept in the file, so a copied or renamed sweep directory is still the same study.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import optuna
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from arnn.bounded import load_json
from arnn.errors import ConfigError, Range, invalid
from arnn.storage import Folder

from ._journal import StudyError
from .config import PRUNERS, SAMPLERS

METRIC = "best_val_accuracy"  # what train.py returns: a trial's objective, an accuracy
METRIC_RANGE = (0.0, 1.0)
IDENTITY_FILE = "study.json"
MAX_DIRNAME = 150
RANGES = {"n_trials": Range(1, integer=True), "n_jobs": Range(1, integer=True, high=4096),
          "eta": Range(2, integer=True), "min_steps": Range(1, integer=True),
          "seed": Range(0, integer=True, high=2**32 - 1),
          "n_startup_trials": Range(0, integer=True), "max_failure_rate": Range(0, high=1)}


def distribution(override: Override) -> BaseDistribution:
    """A sweep override of Hydra's syntax as Optuna's distribution, as Hydra's Optuna sweeper
    reads it: choice(...) and a, b, c are categorical, interval(a, b) uniform (log with
    tag(log, ...)), range(a, b[, step]) integers from a to b."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        ints = isinstance(value.start, int) and isinstance(value.end, int)
        kind = IntDistribution if ints else FloatDistribution
        return kind(value.start, value.end, log="log" in value.tags)
    if isinstance(value, RangeSweep) and not value.shuffle:
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))


def search_space(overrides: list[Override]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The distributions of the sweep overrides, and the other overrides (fixed for all; the
    sweeper sets train.steps and the job directories itself)."""
    space, fixed = {}, []
    for override in overrides:
        key = override.get_key_element()
        if key in ("train.steps", "hydra.sweep.subdir"):
            continue
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def override_value(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def dirname(overrides: list[str]) -> str:
    """A job's directory: its sampled settings (and seed), sorted, as Hydra's override_dirname
    spells them, with any character but letters, digits and `_.,=+-` made `_`."""
    name = re.sub(r"[^\w.,=+-]", "_", ",".join(sorted(overrides)))
    if len(name) > MAX_DIRNAME:
        name = name[:MAX_DIRNAME - 17] + "-" + hashlib.sha1(name.encode()).hexdigest()[:16]
    return name


def check_settings(s: dict[str, Any]) -> None:
    """Each setting of the sweeper within what it can use (the schema typed them), else one
    line naming it."""
    for key, allowed_range in RANGES.items():
        if s.get(key) is not None:
            allowed_range.check(f"hydra.sweeper.{key}", s[key])
    for key, allowed in (("direction", ("maximize",)), ("pruner", PRUNERS)):
        if s[key] not in allowed:
            raise invalid(f"hydra.sweeper.{key}", s[key], allowed if key == "pruner" else
                          f"the sweep maximises {METRIC}, an accuracy: allowed: maximize")
    if isinstance(s["sampler"], str) and s["sampler"] not in SAMPLERS:
        raise invalid("hydra.sweeper.sampler", s["sampler"],
                      ", ".join(SAMPLERS) + ", or {_target_: optuna.samplers...}")
    if s.get("storage") is not None:
        raise invalid("hydra.sweeper.storage", s["storage"], "null: the study lives in <sweep "
                      "dir>/optuna.journal (remove the storage line of a config written for "
                      "Hydra's Optuna sweeper)")
    seeds = s.get("seeds") or []
    for seed in seeds:
        Range(0, integer=True, high=2**32 - 1).check("hydra.sweeper.seeds", seed)
    if len(set(seeds)) != len(seeds):
        raise invalid("hydra.sweeper.seeds", list(seeds), "each seed once")


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its `study.stop()` once the grid is used up (an error
    outside `study.optimize`): the sweeper stops asking itself (`is_exhausted`)."""

    def after_trial(self, *args: Any, **kwargs: Any) -> None:
        pass


def make_sampler(s: dict[str, Any], space: dict[str, BaseDistribution], offset: int
                 ) -> optuna.samplers.BaseSampler:
    """The sampler, seeded with seed + the study's trials so far: a rerun continues."""
    seed = None if s["seed"] is None else s["seed"] + offset
    if not isinstance(s["sampler"], str):
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        return instantiate(OmegaConf.create(s["sampler"]))
    if s["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s["sampler"] == "grid":
        if not all(isinstance(d, CategoricalDistribution) for d in space.values()):
            raise ConfigError("hydra.sweeper.sampler='grid' is invalid: the grid sampler "
                              "needs every parameter as a choice(...) or list")
        return _GridSampler({k: list(d.choices) for k, d in space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s["n_startup_trials"],
                                      multivariate=s["multivariate"], group=s["multivariate"])


def first_budget(s: dict[str, Any], final: int) -> int:
    return s["min_steps"] or max(1, final // s["eta"] ** 2)


def make_pruner(s: dict[str, Any], final: int) -> optuna.pruners.BasePruner:
    first = first_budget(s, final)
    return {
        "none": lambda: optuna.pruners.NopPruner(),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=s["n_startup_trials"]),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=first, reduction_factor=s["eta"]),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource=final, reduction_factor=s["eta"]),
    }[s["pruner"]]()


def identity(s: dict[str, Any], space: dict[str, BaseDistribution], fixed: list[str],
             ladder: list[int]) -> dict[str, Any]:
    """What makes this command's trials comparable with a study's (study.json, less its name)."""
    return {"direction": s["direction"], "metric": METRIC,
            "space": {k: json.loads(distribution_to_json(d)) for k, d in sorted(space.items())},
            "fixed": sorted(fixed), "seeds": list(s["seeds"] or []), "pruner": s["pruner"],
            "budgets": ladder}


def study_name(folder: Folder, wanted: dict[str, Any], journal_studies: list[str],
               preferred: str | None = None) -> str:
    """The study's name, from its identity file; the file written for a new study (named
    `preferred`, or after its directory: Optuna's Hyperband puts trials in brackets by the
    study's name, so a seeded study prunes the same way again), or for one begun before
    identities were recorded (its journal's one study, adopted as it is now). StudyError when
    the directory holds a study of other settings."""
    path = folder.path / IDENTITY_FILE
    recorded = load_json(path, 1 << 20, StudyError) if path.exists() else None
    if recorded is not None:
        if not isinstance(recorded, dict) or not isinstance(recorded.get("name"), str):
            raise StudyError(f"{path} is not a study's identity; move it away to start anew")
        changed = [k for k in wanted if recorded.get(k) != wanted[k]]
        if changed:
            key = changed[0]
            raise StudyError(f"{path.parent} holds a study of other settings ({key}: "
                             f"{json.dumps(recorded.get(key))[:120]} there, "
                             f"{json.dumps(wanted[key])[:120]} now): its trials would mix with "
                             "this command's; use another hydra.sweep.dir")
        return recorded["name"]
    if len(journal_studies) > 1:
        raise StudyError(f"{folder.path} holds {len(journal_studies)} studies and no "
                         f"{IDENTITY_FILE}: use another hydra.sweep.dir")
    name = journal_studies[0] if journal_studies else (preferred or folder.path.resolve().name)
    folder.write_atomic(IDENTITY_FILE, (json.dumps({"name": name, **wanted}, indent=1) + "\n")
                        .encode())
    return name
