"""The one rule of a grid point's score (arnn.points), and the grid points the collector forms:
checked value by value, against the rule as README states it."""

from __future__ import annotations

from arnn.points import score
from arnn.report.choose import best_per_task, grid_points
from arnn.report.jobs import Job, collect
from tests.fixtures import fake_job


def test_a_seed_that_did_not_complete_counts_zero_whatever_its_metric():
    """Pruned, diverged and failed seeds count 0 even when their records hold a metric."""
    for status in ("pruned", "diverged", "failed", "missing"):
        s = score([("completed", 0.5), (status, 0.9)])
        assert s.values == [0.5, 0.0] and s.mean == 0.25 and s.completed == 1, status
        assert "1 not completed (counted 0)" in s.note()


def test_a_seed_still_to_finish_is_pending_not_counted():
    for status in ("running", "requeued", "interrupted"):
        s = score([("completed", 0.5), (status, 0.9)])
        assert (s.values, s.mean, s.pending, s.seeds) == ([0.5], 0.5, 1, 2), status
        assert "1 pending" in s.note()
    assert score([("interrupted", None)]).mean is None  # nothing counted yet


def test_a_task_whose_jobs_all_diverged_or_failed_has_no_best_configuration(tmp_path):
    for num, status in enumerate(["diverged", "failed", "diverged"]):
        fake_job(tmp_path, num, status=status, seed=num)
    jobs = collect([tmp_path]).jobs
    assert len(jobs) == 3
    assert best_per_task(jobs, "best_val_accuracy") == {}
    assert best_per_task(jobs, "test_accuracy") == {}


def test_the_same_settings_at_two_rungs_are_two_points(tmp_path):
    """In a halving sweep a configuration stopped at rung 1 is not pooled with one trained on
    to rung 2."""
    first = Job(tmp_path / "0", "completed", "digits", "arnn", {"lr": 0.1, "seed": 0}, None, 1)
    second = Job(tmp_path / "1", "completed", "digits", "arnn", {"lr": 0.1, "seed": 0}, None, 2)
    points = grid_points([first, second])
    assert sorted(p.rung for p in points) == [1, 2] and all(len(p.jobs) == 1 for p in points)
    seeds = Job(tmp_path / "2", "completed", "digits", "arnn", {"lr": 0.1, "seed": 1}, None, 2)
    assert sorted(len(p.jobs) for p in grid_points([first, second, seeds])) == [1, 2]
