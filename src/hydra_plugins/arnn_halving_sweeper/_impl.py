"""Synchronous successive halving over the basic sweeper's grid.

Rung 1 trains every configuration for `min_steps`; each later rung keeps the best 1/eta of the
previous one and multiplies the budget by eta, the last rung's budget being `train.steps`. A
promoted job is launched again in its own directory with the larger `train.steps`, so the runner
continues it from its checkpoint (bit-identical to training it to that count at once) and its
TensorBoard curves run on. Every rung goes through the configured launcher as one batch; the log
names rungs from 1 and jobs by their directory numbers, as results.md does.

`<sweep dir>/halving.json` (arnn.halving_record) records the grid, the budgets and every rung
(jobs, outcomes, who was promoted). Running the same command again continues at the rung it
reached; rungs already done are not launched again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arnn.errors import invalid
from arnn.halving_record import (
    HALVING_FILE,
    HalvingRecord,
    Outcome,
    Rung,
    read_halving,
    write_halving,
)
from arnn.points import Score, group, score
from arnn.results import ResultsError, Status
from arnn.storage import Folder, shown
from arnn.sweeps import RungSweeper, earlier_budgets, owned, save_multirun
from arnn.sweeps import budgets as rung_budgets

from .config import METRICS, TEST_METRICS, VALIDATION_METRICS


def ranked(outcomes: dict[int, Outcome]) -> list[int]:
    """Job numbers, best first: completed jobs by their metric, then everything else (diverged,
    failed, missing); ties by job number."""

    def key(job: int) -> tuple[bool, float, int]:
        o = outcomes[job]
        ok = o.completed and o.metric is not None
        return (not ok, -(o.metric if ok else 0.0), job)

    return sorted(outcomes, key=key)


def grid_point(config: list[str]) -> list[str]:
    """A job's overrides but the seed: its grid point, as the command line names it."""
    return [o for o in config if o.lstrip("+~").split("=", 1)[0] != "seed"]


def settings(config: list[str]) -> dict[str, str]:
    """A job's overrides as settings (key -> value), for grouping it into its grid point."""
    return dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in config)


def ranked_points(outcomes: dict[int, Outcome], configs: list[list[str]] | None = None
                  ) -> list[tuple[Score, list[int]]]:
    """The rung's grid points that can be ranked (a score, and a seed that completed), best
    first by their scores (arnn.points: a seed that did not complete counts 0); ties by the
    first job number."""
    configs = configs or [[f"job={j}"] for j in range(max(outcomes, default=-1) + 1)]
    points = group(sorted(outcomes), lambda j: settings(configs[j]))
    scores = [(score((outcomes[j].status, outcomes[j].metric) for j in jobs), jobs)
              for jobs in points.values()]
    return sorted(((s, jobs) for s, jobs in scores if s.mean is not None and s.completed),
                  key=lambda p: (-p[0].mean, p[1][0]))


def promote(outcomes: dict[int, Outcome], eta: int, configs: list[list[str]] | None = None
            ) -> list[int]:
    """Every job of the best floor(n / eta) (at least one) of the rung's n grid points; a
    point's seeds go on together, a point none of whose seeds completed does not."""
    points = len(group(outcomes, lambda j: settings(configs[j]) if configs else {"job": j}))
    return [j for _, jobs in ranked_points(outcomes, configs)[:max(1, points // eta)]
            for j in jobs]


class HalvingSweeperImpl(RungSweeper):
    """The sweeper's logic over the shared rung machinery (arnn.sweeps.RungSweeper)."""

    who, tag = "the halving sweeper", "halving"

    def __init__(self, params: dict[str, str] | None, min_steps: int, eta: int,
                 metric: str) -> None:
        self.params, self.min_steps, self.eta, self.metric = params, min_steps, eta, metric

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
        # train.steps is each rung's budget, set per launch.
        return [[o for o in config if not o.startswith("train.steps=")]
                for config in self.basic.split_arguments(self.overrides(arguments), None)[0]]

    def sweep(self, arguments: list[str]) -> Any:
        self._check_settings()
        configs = self._grid(arguments)
        self._check_validation(configs)
        budgets = rung_budgets(self.min_steps, self.eta, self.final_steps())
        with owned(self.config.hydra.sweep.dir) as folder:
            save_multirun(folder, self.config)
            record = self._load_record(folder.path, configs, budgets)
            alive, returns = list(range(len(configs))), []
            for r in range(len(record.budgets)):
                if r < len(record.rungs) and record.rungs[r].done:
                    alive = record.rungs[r].promoted
                else:
                    alive = self._run_rung(folder, record, r, alive, returns)
                if not alive:  # the final rung, or one in which no grid point completed
                    break
            self._totals(folder.path, record)
        return returns

    def _run_rung(self, folder: Folder, record: HalvingRecord, r: int, alive: list[int],
                  returns: list[Any]) -> list[int]:
        """Launch rung r's jobs, record their outcomes; returns the promoted jobs."""
        budget, configs = record.budgets[r], record.configs
        del record.rungs[r:]
        rung = Rung(budget, alive)
        record.rungs.append(rung)
        write_halving(folder, record)
        rung_name = f"rung {r + 1}/{len(record.budgets)}"
        outcomes, launched = self.launch(folder.path, {str(j): configs[j] for j in alive},
                                         budget, self.metric, rung_name)
        returns.append(launched)
        rung.outcomes = {int(j): o for j, o in outcomes.items()}
        last = r == len(record.budgets) - 1
        rung.promoted = [] if last else promote(rung.outcomes, self.eta, configs)
        rung.done = True
        write_halving(folder, record)
        self._summary(rung_name, budget, rung.outcomes, rung.promoted, last)
        return rung.promoted

    def _load_record(self, sweep_dir: Path, configs: list[list[str]],
                     budgets: list[int]) -> HalvingRecord:
        fresh = HalvingRecord(self.metric, self.eta, self.min_steps, budgets, configs)
        record = read_halving(sweep_dir)
        if record is None:
            return fresh
        if record.budgets == earlier_budgets(self.min_steps, self.eta, budgets[-1]):
            fresh.budgets = record.budgets  # begun by an earlier version: go on alike
        if (record.metric, record.eta, record.budgets, record.configs) != (
                fresh.metric, fresh.eta, fresh.budgets, fresh.configs):
            raise ResultsError(f"{sweep_dir} holds another halving sweep (its {HALVING_FILE} "
                               "has other configurations, budgets or metric): use another "
                               "hydra.sweep.dir")
        return record

    def _summary(self, rung_name: str, budget: int, outcomes: dict[int, Outcome],
                 promoted: list[int], last: bool) -> None:
        counts: dict[str, int] = {}
        for o in outcomes.values():
            counts[o.status] = counts.get(o.status, 0) + 1
        top = ", ".join(f"job {j} {outcomes[j].metric:.4f}" for j in ranked(outcomes)[:5]
                        if outcomes[j].metric is not None and outcomes[j].completed)
        what = "final rung" if last else f"promoted {len(promoted)}: jobs {promoted}"
        print(f"[halving] {rung_name} done at {budget} steps: "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
              + f"; best {self.metric}: {top or '-'}; {what}", flush=True)
        for job, o in sorted(outcomes.items()):
            if o.error:  # not counted: refused, or a record of another configuration
                print(f"[halving] job {job} failed, not counted: {o.error}", flush=True)
            elif o.status == Status.DIVERGED.value:
                print(f"[halving] job {job} diverged (counts 0)", flush=True)

    def _totals(self, sweep_dir: Path, record: HalvingRecord) -> None:
        steps = record.steps_trained()
        full = len(record.configs) * record.budgets[-1]
        best = "no grid point completed"
        for rung in reversed(record.rungs):
            points = ranked_points(rung.outcomes, record.configs)
            if rung.done and points:
                top, jobs = points[0]
                best = (f"best grid point: {' '.join(grid_point(record.configs[jobs[0]]))}"
                        f", {self.metric} {top.mean:.4f} over {top.seeds} seed(s){top.note()} "
                        f"(jobs {', '.join(str(sweep_dir / str(j)) for j in jobs)})")
                break
        print(f"[halving] {steps} steps trained, {steps / full:.1%} of the full grid's {full}; "
              f"{best}; results in {shown(sweep_dir)} (tables: arnn-collect {shown(sweep_dir)})",
              flush=True)
