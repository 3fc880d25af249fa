"""Model-based search: Hydra's Optuna sweeper over conf/hparams_search/appendix_c.yaml (TPE),
maximising the validation accuracy train.py returns; resumable from its SQLite study."""

from __future__ import annotations

import pytest

from arnn.report.jobs import collect
from arnn.results import RunResult
from tests.fixtures import SMALL, run_cli

pytestmark = pytest.mark.slow

# A small space in which lr=1e12 diverges (train.max_loss) and the rest trains.
SEARCH = ("-m", "hydra/sweeper=optuna", "+hparams_search=appendix_c", "model=arnn", *SMALL,
          "train.steps=20", "train.eval_every=10", "train.log_every=10",
          "hydra.sweeper.n_trials=12", "optimizer.lr=choice(0.1,1e12)",
          "model.sigma_w=choice(0,1)")


def _trials(sweep):
    import optuna

    study = optuna.load_study(study_name="arnn_digits", storage=f"sqlite:///{sweep}/optuna.db")
    return study.trials


def test_a_tpe_study_survives_divergence_and_resumes(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(*SEARCH, f"hydra.sweep.dir={sweep}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(sweep)
    assert len(trials) == 12
    jobs = {p.parent.parent: RunResult.read(p.parent.parent)
            for p in sweep.glob("*/.hydra/config.yaml")}
    statuses = {r.status.value for r in jobs.values()}
    assert "diverged" in statuses and "completed" in statuses  # the study went on
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(t.value for t in completed)
    assert best == max(r.best_val_accuracy for r in jobs.values()
                       if r.best_val_accuracy is not None)  # the objective: validation
    before = {d: (d / "results.json").stat().st_mtime_ns for d in jobs}
    again = run_cli(*SEARCH, f"hydra.sweep.dir={sweep}", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_trials(sweep)) == 24  # resumed: the study grew
    for d, mtime in before.items():  # a configuration sampled again was not retrained
        assert (d / "results.json").stat().st_mtime_ns == mtime
    assert "not trained again" in again.stdout + again.stderr
    found = collect([sweep])  # the collector reads a study's sweep directory like any other
    assert {j.path for j in found.jobs} >= set(jobs) and found.missing == 0


def test_a_study_without_a_validation_split_fails_each_trial_and_says_why(tmp_path):
    proc = run_cli(*SEARCH[:-3], "hydra.sweeper.n_trials=2", "dataset.val_size=0",
                   f"hydra.sweep.dir={tmp_path / 'search'}", timeout=600)
    assert "Return value must be float-castable" in proc.stdout + proc.stderr
    assert all(t.state.name == "FAIL" for t in _trials(tmp_path / "search"))
