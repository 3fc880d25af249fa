"""One grid point, one score: the jobs of a sweep that differ only in their seed are one point, and
one rule says what the point scores, for every sweeper and the collector alike.

The rule (docs/presets.md, "Seeds and spread"): a point's score is the mean over its seeds of
each seed's value, where a seed that **completed** counts its metric, and a seed that diverged,
failed, was pruned or never ran counts **0**: a setting that fails for one seed in three is
worse than one that does not, and the sweeper that promotes, the search that learns and the
table that reports must all see that. A seed still running (or requeued, or interrupted and
waiting to resume) is not counted yet: the point is *pending*, scored over the seeds that have
finished, and says so. The spread is the sample standard deviation of the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from arnn.results import Status

SEED = "seed"
# Not finished yet: a seed in one of these states is left out of its point's score.
PENDING = frozenset({Status.RUNNING, Status.REQUEUED, Status.INTERRUPTED})

T = TypeVar("T")


def point_key(settings: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What identifies a job's grid point: every setting but the seed."""
    return tuple(sorted((key, repr(value)) for key, value in settings.items() if key != SEED))


def group(items: Iterable[T], settings: Callable[[T], Mapping[str, Any]]
          ) -> dict[tuple[tuple[str, str], ...], list[T]]:
    """Items grouped by their grid point, in the order each point first appears."""
    points: dict[tuple[tuple[str, str], ...], list[T]] = {}
    for item in items:
        points.setdefault(point_key(settings(item)), []).append(item)
    return points


def seed_value(status: str, metric: float | None) -> float | None:
    """What one seed counts: its metric if it completed (None if it has none: a metric the run
    does not report, e.g. validation without a validation split), 0 if it ended any other way;
    None while it is pending."""
    status = _status(status)
    if status in PENDING:
        return None
    return metric if status is Status.COMPLETED else 0.0


@dataclass
class Score:
    """A grid point's score over its seeds."""

    values: list[float] = field(default_factory=list)  # the counted seeds' values
    seeds: int = 0  # all of the point's seeds
    completed: int = 0
    pending: int = 0
    unmeasured: int = 0  # completed without the metric

    @property
    def mean(self) -> float | None:
        """None when no seed can be counted, or a completed seed lacks the metric."""
        if not self.values or self.unmeasured:
            return None
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        mean = self.mean or 0.0
        return math.sqrt(sum((v - mean) ** 2 for v in self.values)
                         / max(len(self.values) - 1, 1))

    @property
    def counted(self) -> int:
        return len(self.values)

    def note(self) -> str:
        """What the numbers leave out: `; 1 failed`, `; 1 running`, or nothing."""
        lost = self.counted - self.completed
        parts = ([f"{lost} not completed (counted 0)"] if lost else []) + (
            [f"{self.pending} pending"] if self.pending else [])
        return "".join(f"; {p}" for p in parts)


def score(seeds: Iterable[tuple[str, float | None]]) -> Score:
    """The score of a point whose seeds ended as (status, metric)."""
    out = Score()
    for status, metric in seeds:
        out.seeds += 1
        value = seed_value(status, metric)
        if _status(status) in PENDING:
            out.pending += 1
        elif value is None:
            out.unmeasured += 1
        else:
            out.values.append(value)
            out.completed += _status(status) is Status.COMPLETED
    return out


def _status(status: str) -> Status | None:
    try:
        return Status(status)
    except ValueError:  # `missing` (no record) and other words that are no run's status
        return None
