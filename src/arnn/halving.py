"""Synchronous successive halving as a Hydra sweeper: `hydra/sweeper=halving`.

The grid is the basic sweeper's (`hydra.sweeper.params` plus command-line lists). Rung 0 trains
every configuration for `min_steps`; each later rung keeps the best 1/eta of the previous one and
multiplies the budget by eta, the last rung's budget being `train.steps`. A promoted job is
launched again in its own directory with the larger `train.steps`, so the runner continues it
from its checkpoint (bit-identical to training it to that count at once) and its TensorBoard
curves run on. Every rung goes through the configured launcher as one batch.

`<sweep dir>/halving.json` records the grid, the budgets and every rung (jobs, statuses,
metrics, who was promoted). Running the same command again continues at the rung it reached;
rungs already done are not launched again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from arnn.results import ResultsError, RunResult
from arnn.storage import write_atomic

HALVING_FILE = "halving.json"
METRICS = ("test_accuracy", "best_test_accuracy")


def rung_budgets(min_steps: int, eta: int, final_steps: int) -> list[int]:
    """min_steps, min_steps * eta, ... below final_steps, then final_steps."""
    budgets, budget = [], min_steps
    while budget < final_steps:
        budgets.append(budget)
        budget *= eta
    return budgets + [final_steps]


def outcome(job_dir: Path, metric: str) -> dict[str, Any]:
    """A job's status, metric and steps from its results.json (`missing` if it has none)."""
    try:
        result = RunResult.read(job_dir)
    except ResultsError as e:
        return {"status": "failed", "metric": None, "steps": 0, "error": str(e)}
    if result is None:
        return {"status": "missing", "metric": None, "steps": 0}
    return {"status": result.status, "metric": getattr(result, metric), "steps": result.steps}


def ranked(outcomes: dict[int, dict[str, Any]]) -> list[int]:
    """Job numbers, best first: completed jobs by their metric, then everything else (diverged,
    failed, missing); ties by job number."""

    def key(job: int) -> tuple[bool, float, int]:
        o = outcomes[job]
        ok = o["status"] == "completed" and o["metric"] is not None
        return (not ok, -(o["metric"] if ok else 0.0), job)

    return sorted(outcomes, key=key)


def promote(outcomes: dict[int, dict[str, Any]], eta: int) -> list[int]:
    """The best floor(n / eta) (at least one) of the completed jobs."""
    keep = max(1, len(outcomes) // eta)
    return [j for j in ranked(outcomes) if outcomes[j]["status"] == "completed"][:keep]


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class HalvingSweeper(BasicSweeper):
    def __init__(
        self,
        params: dict[str, str] | None = None,
        min_steps: int = 1000,
        eta: int = 3,
        metric: str = "test_accuracy",
    ) -> None:
        super().__init__(max_batch_size=None, params=params)
        self.min_steps, self.eta, self.metric = min_steps, eta, metric

    def _check_settings(self) -> None:
        if not isinstance(self.min_steps, int) or self.min_steps < 1:
            _fail(f"hydra.sweeper.min_steps={self.min_steps!r} is invalid: must be an integer >= 1")
        if not isinstance(self.eta, int) or self.eta < 2:
            _fail(f"hydra.sweeper.eta={self.eta!r} is invalid: must be an integer >= 2")
        if self.metric not in METRICS:
            _fail(f"hydra.sweeper.metric={self.metric!r} is invalid: allowed: "
                  + ", ".join(METRICS))

    def _grid(self, arguments: list[str]) -> list[list[str]]:
        params = self._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(params)
        for override in overrides:
            if override.get_key_element() in ("train.steps", "hydra.sweep.subdir"):
                if override.is_sweep_override():
                    _fail(f"{override.input_line} is invalid: the halving sweeper sets "
                          f"{override.get_key_element()} itself (train.steps is the last rung's "
                          "budget: give one value)")
        # train.steps is each rung's budget, set per launch.
        return [[o for o in config if not o.startswith("train.steps=")]
                for config in self.split_arguments(overrides, None)[0]]

    def sweep(self, arguments: list[str]) -> Any:
        self._check_settings()
        configs = self._grid(arguments)
        final_steps = int(self.config.train.steps)
        if final_steps < 1:
            _fail(f"train.steps={final_steps} is invalid: the last rung's budget must be >= 1")
        budgets = rung_budgets(self.min_steps, self.eta, final_steps)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        record = self._load_record(sweep_dir, configs, budgets)
        alive, returns = list(range(len(configs))), []
        for r, budget in enumerate(budgets):
            if r < len(record["rungs"]) and record["rungs"][r]["done"]:
                alive = record["rungs"][r]["promoted"]
                continue
            del record["rungs"][r:]
            record["rungs"].append({"budget": budget, "jobs": alive, "done": False})
            self._save(sweep_dir, record)
            print(f"[halving] rung {r + 1}/{len(budgets)}: {len(alive)} job(s) to "
                  f"{budget} steps", flush=True)
            batch = [[*configs[j], f"train.steps={budget}", f"hydra.sweep.subdir={j}"]
                     for j in alive]
            returns.append(self.launcher.launch(batch, initial_job_idx=0))
            outcomes = {j: outcome(sweep_dir / str(j), self.metric) for j in alive}
            last = r == len(budgets) - 1
            alive = [] if last else promote(outcomes, self.eta)
            record["rungs"][r].update(
                outcomes={str(j): o for j, o in outcomes.items()}, promoted=alive, done=True)
            self._save(sweep_dir, record)
            self._summary(r, budget, outcomes, alive, last)
            if not alive:
                break
        self._totals(sweep_dir, record)
        return returns

    def _load_record(self, sweep_dir: Path, configs: list[list[str]],
                     budgets: list[int]) -> dict[str, Any]:
        fresh = {"version": 1, "metric": self.metric, "eta": self.eta,
                 "min_steps": self.min_steps, "budgets": budgets, "configs": configs,
                 "rungs": []}
        path = sweep_dir / HALVING_FILE
        if not path.exists():
            return fresh
        try:
            record = json.loads(path.read_text())
            same = all(record[k] == fresh[k] for k in ("metric", "eta", "budgets", "configs"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            _fail(f"{path} cannot be read ({e}); move it away to start the sweep over")
        if not same:
            _fail(f"{sweep_dir} holds another halving sweep (its {HALVING_FILE} has other "
                  "configurations, budgets or metric): use another hydra.sweep.dir")
        return record

    @staticmethod
    def _save(sweep_dir: Path, record: dict[str, Any]) -> None:
        write_atomic(sweep_dir / HALVING_FILE, (json.dumps(record, indent=1) + "\n").encode())

    def _summary(self, r: int, budget: int, outcomes: dict[int, dict[str, Any]],
                 promoted: list[int], last: bool) -> None:
        counts: dict[str, int] = {}
        for o in outcomes.values():
            counts[o["status"]] = counts.get(o["status"], 0) + 1
        order = ranked(outcomes)
        top = ", ".join(f"#{j} {outcomes[j]['metric']:.4f}" for j in order[:5]
                        if outcomes[j]["metric"] is not None)
        what = "final rung" if last else f"promoted {len(promoted)}: {promoted}"
        print(f"[halving] rung {r + 1} done at {budget} steps: "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
              + f"; best {self.metric}: {top or '-'}; {what}", flush=True)

    def _totals(self, sweep_dir: Path, record: dict[str, Any]) -> None:
        steps = steps_trained(record)
        full = len(record["configs"]) * record["budgets"][-1]
        best = None
        for rung in reversed(record["rungs"]):
            if rung.get("done"):
                outcomes = {int(j): o for j, o in rung["outcomes"].items()}
                best = ranked(outcomes)[0]
                break
        print(f"[halving] {steps} steps trained, {steps / full:.1%} of the full grid's {full}; "
              f"best job: #{best} {record['configs'][best] if best is not None else ''} "
              f"({sweep_dir / str(best)})", flush=True)


def steps_trained(record: dict[str, Any]) -> int:
    """Steps trained by all jobs together: each job's deepest recorded step count."""
    steps: dict[str, int] = {}
    for rung in record["rungs"]:
        for job, o in rung.get("outcomes", {}).items():
            steps[job] = max(steps.get(job, 0), o["steps"])
    return sum(steps.values())
