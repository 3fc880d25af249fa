"""What a sweep learns of a launched job (`Outcome`), and a halving sweep's record,
`<sweep dir>/halving.json` (`HalvingRecord`): typed, written by the halving sweeper, read back by
it and by the collector through `read_halving` only, which refuses a file no sweeper wrote.

halving.json: {"version", "metric", "eta", "min_steps", "budgets": [int], "configs":
[[override, ...]], "rungs": [{"budget", "jobs": [int], "done", "outcomes": {job: {status,
metric, steps[, error]}}, "promoted": [int]}]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arnn.results import ResultsError, Status, _fits, _read_object
from arnn.storage import Folder

HALVING_FILE = "halving.json"
FAILED, MISSING = "failed", "missing"  # a launch that failed or a record of another run; none


@dataclass(frozen=True)
class Outcome:
    """A job after its launch: its record's status (a Status value), or `failed` (the launch
    failed, or the record is another configuration's: `error` says which) or `missing` (no
    record); the metric it was launched to be ranked by, and its steps."""

    status: str
    metric: float | None = None
    steps: int = 0
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == Status.COMPLETED.value

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "error" or v is not None}

    @classmethod
    def from_json(cls, data: Any) -> Outcome:
        if not (isinstance(data, dict) and isinstance(data.get("status"), str)
                and _fits(data.get("metric"), float | None) and _fits(data.get("steps"), int)
                and data["steps"] >= 0 and _fits(data.get("error"), str | None)):
            raise ValueError("an outcome is {status, metric, steps}")
        return cls(data["status"], data.get("metric"), data["steps"], data.get("error"))


@dataclass
class Rung:
    budget: int
    jobs: list[int]
    done: bool = False
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    promoted: list[int] = field(default_factory=list)


@dataclass
class HalvingRecord:
    metric: str
    eta: int
    min_steps: int
    budgets: list[int]
    configs: list[list[str]]
    rungs: list[Rung] = field(default_factory=list)
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rungs"] = [{"budget": r.budget, "jobs": r.jobs, "done": r.done,
                          "outcomes": {str(j): o.to_json() for j, o in r.outcomes.items()},
                          "promoted": r.promoted} for r in self.rungs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HalvingRecord:
        """The record `data` holds; ValueError saying what a sweeper would not have written."""
        def ints(value: Any, low: int) -> list[int]:
            if not (isinstance(value, list) and all(_fits(v, int) and v >= low for v in value)):
                raise ValueError(f"{value!r:.60} must be a list of integers >= {low}")
            return value

        if not isinstance(data.get("metric"), str) or not (_fits(data.get("eta"), int)
                                                          and data["eta"] >= 2):
            raise ValueError("metric must be a name and eta an integer >= 2")
        budgets = ints(data.get("budgets"), 1)
        configs = data.get("configs")
        if not budgets or not (isinstance(configs, list) and all(
                isinstance(c, list) and all(isinstance(o, str) for o in c) for c in configs)):
            raise ValueError("budgets must be given and configs be lists of overrides")
        rungs = data.get("rungs")
        if not isinstance(rungs, list) or len(rungs) > len(budgets):
            raise ValueError("rungs must be a list, one per budget at most")
        record = cls(data["metric"], data["eta"], data.get("min_steps", 1), budgets, configs,
                     [_rung(r, len(configs)) for r in rungs], data.get("version", 1))
        if not (_fits(record.min_steps, int) and record.min_steps >= 1):
            raise ValueError("min_steps must be an integer >= 1")
        return record

    def steps_trained(self) -> int:
        """Steps trained by all jobs: each job's deepest recorded step count."""
        steps: dict[int, int] = {}
        for rung in self.rungs:
            for job, o in rung.outcomes.items():
                steps[job] = max(steps.get(job, 0), o.steps)
        return sum(steps.values())


def _rung(data: Any, jobs: int) -> Rung:
    if not isinstance(data, dict) or not isinstance(data.get("done", False), bool):
        raise ValueError("a rung is {budget, jobs, done, outcomes, promoted}")
    outcomes = data.get("outcomes", {})
    if not isinstance(outcomes, dict) or not all(j.isdigit() for j in outcomes):
        raise ValueError("a rung's outcomes are {job: outcome}")
    rung = Rung(data.get("budget"), data.get("jobs"), data.get("done", False),
                {int(j): Outcome.from_json(o) for j, o in outcomes.items()},
                data.get("promoted", []))
    numbers = [*(rung.jobs if isinstance(rung.jobs, list) else [None]), *rung.outcomes,
               *(rung.promoted if isinstance(rung.promoted, list) else [None])]
    if not (_fits(rung.budget, int) and rung.budget >= 1
            and all(_fits(j, int) and 0 <= j < jobs for j in numbers)):
        raise ValueError("a rung's budget and job numbers must be those of the configs")
    if rung.done and not ("promoted" in data and "outcomes" in data):
        raise ValueError("a rung marked done lacks its outcomes or promotions")
    return rung


def read_halving(sweep_dir: Path) -> HalvingRecord | None:
    """A halving sweep's record, None for other sweeps; ResultsError when it is damaged."""
    path = Path(sweep_dir) / HALVING_FILE
    data = _read_object(path, "a halving sweep's record")
    if data is None:
        return None
    try:
        return HalvingRecord.from_json(data)
    except (ValueError, TypeError) as e:
        raise ResultsError(f"{path}: not a halving sweep's record: {e}") from None


def write_halving(sweep_dir: Folder, record: HalvingRecord) -> None:
    sweep_dir.write_atomic(HALVING_FILE, (json.dumps(record.to_json(), indent=1) + "\n")
                           .encode())
