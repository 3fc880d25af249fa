"""Synchronous successive halving over the basic sweeper's grid.

Rung 0 trains every configuration for `min_steps`; each later rung keeps the best 1/eta of the
previous one and multiplies the budget by eta, the last rung's budget being `train.steps`. A
promoted job is launched again in its own directory with the larger `train.steps`, so the runner
continues it from its checkpoint (bit-identical to training it to that count at once) and its
TensorBoard curves run on. Every rung goes through the configured launcher as one batch.

`<sweep dir>/halving.json` (arnn.results) records the grid, the budgets and every rung (jobs,
statuses, metrics, who was promoted). Running the same command again continues at the rung it
reached; rungs already done are not launched again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from arnn.errors import ConfigError, invalid
from arnn.points import Score, group, score
from arnn.results import (
    HALVING_FILE,
    ResultsError,
    Status,
    read_halving,
    steps_trained,
    write_halving,
)
from arnn.storage import Folder
from arnn.sweeps import budgets as rung_budgets
from arnn.sweeps import earlier_budgets, outcome, owned, save_multirun

from .config import METRICS, TEST_METRICS, VALIDATION_METRICS


def ranked(outcomes: dict[int, dict[str, Any]]) -> list[int]:
    """Job numbers, best first: completed jobs by their metric, then everything else (diverged,
    failed, missing); ties by job number."""

    def key(job: int) -> tuple[bool, float, int]:
        o = outcomes[job]
        ok = o["status"] == Status.COMPLETED and o["metric"] is not None
        return (not ok, -(o["metric"] if ok else 0.0), job)

    return sorted(outcomes, key=key)


def settings_text(config: list[str]) -> list[str]:
    """A job's overrides but the seed: its grid point, as the command line names it."""
    return [o for o in config if o.lstrip("+~").split("=", 1)[0] != "seed"]


def settings(config: list[str]) -> dict[str, str]:
    """A job's overrides as settings (key -> value), for grouping it into its grid point."""
    return dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in config)


def ranked_points(outcomes: dict[int, dict[str, Any]], configs: list[list[str]] | None = None
                  ) -> list[tuple[Score, list[int]]]:
    """The rung's grid points that can be ranked (a score, and a seed that completed), best
    first by their scores (arnn.points: a seed that did not complete counts 0); ties by the
    first job number."""
    configs = configs or [[f"job={j}"] for j in range(max(outcomes, default=-1) + 1)]
    points = group(sorted(outcomes), lambda j: settings(configs[j]))
    scores = [(score((outcomes[j]["status"], outcomes[j]["metric"]) for j in jobs), jobs)
              for jobs in points.values()]
    return sorted(((s, jobs) for s, jobs in scores if s.mean is not None and s.completed),
                  key=lambda p: (-p[0].mean, p[1][0]))


def promote(outcomes: dict[int, dict[str, Any]], eta: int, configs: list[list[str]] | None = None
            ) -> list[int]:
    """Every job of the best floor(n / eta) (at least one) of the rung's n grid points; a
    point's seeds go on together, a point none of whose seeds completed does not."""
    points = len(group(outcomes, lambda j: settings(configs[j]) if configs else {"job": j}))
    return [j for _, jobs in ranked_points(outcomes, configs)[:max(1, points // eta)]
            for j in jobs]


class HalvingSweeperImpl:
    """The sweeper's logic; the basic sweeper (made at setup: Hydra's plugin scan may load its
    module anew) parses the grid and holds the launcher."""

    def __init__(self, params: dict[str, str] | None, min_steps: int, eta: int,
                 metric: str) -> None:
        self.params, self.min_steps, self.eta, self.metric = params, min_steps, eta, metric

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        self.basic = BasicSweeper(max_batch_size=None, params=self.params)
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config, self.launcher = config, self.basic.launcher

    def _check_settings(self) -> None:
        if not isinstance(self.min_steps, int) or self.min_steps < 1:
            raise invalid("hydra.sweeper.min_steps", self.min_steps, "must be an integer >= 1")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise invalid("hydra.sweeper.eta", self.eta, "must be an integer >= 2")
        if self.metric not in METRICS:
            raise invalid("hydra.sweeper.metric", self.metric, METRICS)
        if self.metric in TEST_METRICS:
            print(f"[halving] warning: ranking by {self.metric} chooses on the test split; the "
                  "chosen configuration's test accuracy is then not a test result", flush=True)

    def _check_validation(self, configs: list[list[str]]) -> None:
        """Ranking by validation needs a validation split in every job."""
        if self.metric not in VALIDATION_METRICS:
            return
        sizes = {o.split("=", 1)[1] for c in configs for o in c
                 if o.startswith("dataset.val_size=")} or {str(self.config.dataset.val_size)}
        if "0" in sizes:
            raise invalid("dataset.val_size", 0, f"hydra.sweeper.metric={self.metric} ranks by "
                          "the validation split: hold some out (dataset.val_size > 0), or rank "
                          "by a test metric knowingly")

    def _grid(self, arguments: list[str]) -> list[list[str]]:
        params = self.basic._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.basic.hydra_context.config_loader)
        overrides = parser.parse_overrides(params)
        for override in overrides:
            key = override.get_key_element()
            if key in ("train.steps", "hydra.sweep.subdir") and override.is_sweep_override():
                raise ConfigError(f"{override.input_line} is invalid: the halving sweeper sets "
                                  f"{key} itself (train.steps is the last rung's budget: give "
                                  "one value)")
        # train.steps is each rung's budget, set per launch.
        return [[o for o in config if not o.startswith("train.steps=")]
                for config in self.basic.split_arguments(overrides, None)[0]]

    def sweep(self, arguments: list[str]) -> Any:
        self._check_settings()
        configs = self._grid(arguments)
        self._check_validation(configs)
        final_steps = int(self.config.train.steps)
        if final_steps < 1:
            raise invalid("train.steps", final_steps, "the last rung's budget must be >= 1")
        budgets = rung_budgets(self.min_steps, self.eta, final_steps)
        with owned(self.config.hydra.sweep.dir) as folder:
            save_multirun(folder, self.config)
            record = self._load_record(folder.path, configs, budgets)
            alive, returns = list(range(len(configs))), []
            for r in range(len(budgets)):
                if r < len(record["rungs"]) and record["rungs"][r].get("done"):
                    alive = record["rungs"][r].get("promoted", [])
                else:
                    alive = self._run_rung(folder, record, r, alive, returns)
                if not alive:  # the final rung, or one in which no grid point completed
                    break
            self._totals(folder.path, record)
        return returns

    def _run_rung(self, folder: Folder, record: dict[str, Any], r: int, alive: list[int],
                  returns: list[Any]) -> list[int]:
        """Launch rung r's jobs, record their outcomes; returns the promoted jobs."""
        budgets, configs = record["budgets"], record["configs"]
        budget = budgets[r]
        del record["rungs"][r:]
        record["rungs"].append({"budget": budget, "jobs": alive, "done": False})
        write_halving(folder, record)
        print(f"[halving] rung {r + 1}/{len(budgets)}: {len(alive)} job(s) to "
              f"{budget} steps", flush=True)
        batch = [[*configs[j], f"train.steps={budget}", f"hydra.sweep.subdir={j}"]
                 for j in alive]
        launched = list(self.launcher.launch(batch, initial_job_idx=0))
        returns.append(launched)
        outcomes = {j: outcome(folder.path / str(j), self.metric, ret)
                    for j, ret in zip(alive, launched, strict=True)}
        last = r == len(budgets) - 1
        promoted = [] if last else promote(outcomes, self.eta, configs)
        record["rungs"][r].update(
            outcomes={str(j): o for j, o in outcomes.items()}, promoted=promoted, done=True)
        write_halving(folder, record)
        self._summary(r, budget, outcomes, promoted, last)
        return promoted

    def _load_record(self, sweep_dir: Path, configs: list[list[str]],
                     budgets: list[int]) -> dict[str, Any]:
        fresh = {"version": 1, "metric": self.metric, "eta": self.eta,
                 "min_steps": self.min_steps, "budgets": budgets, "configs": configs,
                 "rungs": []}
        record = read_halving(sweep_dir)
        if record is None:
            return fresh
        if record["budgets"] == earlier_budgets(self.min_steps, self.eta, budgets[-1]):
            fresh["budgets"] = record["budgets"]  # begun by an earlier version: go on alike
        if any(record[k] != fresh[k] for k in ("metric", "eta", "budgets", "configs")):
            raise ResultsError(f"{sweep_dir} holds another halving sweep (its {HALVING_FILE} "
                               "has other configurations, budgets or metric): use another "
                               "hydra.sweep.dir")
        return record

    def _summary(self, r: int, budget: int, outcomes: dict[int, dict[str, Any]],
                 promoted: list[int], last: bool) -> None:
        counts: dict[str, int] = {}
        for o in outcomes.values():
            counts[o["status"]] = counts.get(o["status"], 0) + 1
        top = ", ".join(f"#{j} {outcomes[j]['metric']:.4f}" for j in ranked(outcomes)[:5]
                        if outcomes[j]["metric"] is not None)
        what = "final rung" if last else f"promoted {len(promoted)}: {promoted}"
        print(f"[halving] rung {r + 1} done at {budget} steps: "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
              + f"; best {self.metric}: {top or '-'}; {what}", flush=True)
        for job, o in sorted(outcomes.items()):
            if o.get("error"):  # not counted: refused, or a record of another configuration
                print(f"[halving] job #{job} failed, not counted: {o['error']}", flush=True)

    def _totals(self, sweep_dir: Path, record: dict[str, Any]) -> None:
        steps = steps_trained(record)
        full = len(record["configs"]) * record["budgets"][-1]
        best = "no grid point completed"
        for rung in reversed(record["rungs"]):
            points = ranked_points({int(j): o for j, o in rung.get("outcomes", {}).items()},
                                   record["configs"])
            if rung.get("done") and points:
                top, jobs = points[0]
                best = (f"best grid point: {' '.join(settings_text(record['configs'][jobs[0]]))}"
                        f", {self.metric} {top.mean:.4f} over {top.seeds} seed(s){top.note()} "
                        f"(jobs {', '.join(str(sweep_dir / str(j)) for j in jobs)})")
                break
        print(f"[halving] {steps} steps trained, {steps / full:.1%} of the full grid's {full}; "
              f"{best}", flush=True)
