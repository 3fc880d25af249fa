"""Choosing each task's configuration: jobs grouped into grid points (every setting but the seed,
and a halving sweep's rung), each point scored by the one rule of `arnn.points`, the best point
per (dataset, model) chosen by a validation metric and reported by the test accuracy that goes
with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arnn.errors import ConfigError
from arnn.points import Score, group, score
from arnn.report.jobs import Job, finished
from arnn.results import VALIDATION_METRICS


@dataclass
class Point:
    """A configuration of a task and the jobs that ran it, one per seed."""

    dataset: str
    model: str
    settings: dict[str, Any]  # every setting but the seed
    rung: int  # in a halving sweep: the deepest rung its jobs reached (from 1; 0: none)
    jobs: list[Job]
    tied: int = 0  # as chosen: how many other points had the same rank

    def score(self, metric: str) -> Score:
        return score((job.status, job.metric(metric)) for job in self.jobs)


def grid_points(jobs: list[Job]) -> list[Point]:
    """Jobs grouped by task and every setting but the seed (and by halving rung)."""
    points = group(jobs, lambda j: {**j.settings, "dataset": j.dataset, "model": j.model,
                                    "rung": j.rung or 0})
    return [Point(js[0].dataset, js[0].model,
                  {k: v for k, v in js[0].settings.items() if k != "seed"}, js[0].rung or 0, js)
            for js in points.values()]


def best_per_task(jobs: list[Job], select: str) -> dict[tuple[str, str], Point]:
    """The best configuration per (dataset, model): in a halving sweep the deepest rung first
    (a configuration stopped early is not compared with one trained to the end), then the score
    of `select` over its seeds (ties: the first point met, the others counted in `tied`: a
    validation split of 135 examples ties often). A point with no seed completed is never
    chosen."""
    best: dict[tuple[str, str], tuple[tuple[int, float], Point]] = {}
    for point in grid_points(jobs):
        s = point.score(select)
        if s.mean is None or not s.completed:
            continue
        key, rank = (point.dataset, point.model), (point.rung, s.mean)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, point)
        elif rank == best[key][0]:
            best[key][1].tied += 1
    return {key: point for key, (_, point) in best.items()}


def check_selectable(jobs: list[Job], select: str) -> None:
    """Choosing by validation needs jobs that have a validation split (`num_val`, so that a
    sweep whose jobs all diverged before their first evaluation still counts as one)."""
    ended = finished(jobs)
    if select in VALIDATION_METRICS and ended and all(
            j.metric(select) is None and not j.metric("num_val") for j in ended):
        raise ConfigError(f"--select={select} is invalid: no job has a validation split "
                          "(dataset.val_size=0); choose by a test metric knowingly "
                          "(--select test_accuracy: then its number is no test result)")
