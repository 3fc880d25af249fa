"""Extending runs, the successive-halving sweeper, refused jobs in sweeps, the collector's
ranking."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from arnn.checkpoint import CHECKPOINT
from arnn.collect import collect
from arnn.collect import main as collect_main
from arnn.config import ConfigError
from arnn.results import RunResult
from arnn.run_dir import run
from hydra_plugins.arnn_halving_sweeper._impl import (
    grid_points,
    outcome,
    promote,
    ranked,
    rung_budgets,
)
from tests.fixtures import ROOT, SMALL, compose_cfg, read_checkpoint, run_cli

GRID = ("model=arnn", "model.eps=0.01,0.1", "optimizer.lr=0.1,0.3", *SMALL)


def _params(run_dir):
    return read_checkpoint(run_dir / CHECKPOINT)["model"]


# --- extending a run --------------------------------------------------------------------------

def test_extending_a_finished_run_is_bit_identical_to_training_it_at_once(tmp_path):
    args = (*SMALL, "train.eval_every=150", "train.log_every=50", "train.checkpoint_every=150")
    run(compose_cfg(*args, "train.steps=400"), tmp_path / "straight")
    run(compose_cfg(*args, "train.steps=200"), tmp_path / "extended")
    assert RunResult.read(tmp_path / "extended").steps == 200
    run(compose_cfg(*args, "train.steps=400"), tmp_path / "extended")
    a, b = _params(tmp_path / "straight"), _params(tmp_path / "extended")
    assert all(torch.equal(a[k], b[k]) for k in a)
    result = RunResult.read(tmp_path / "extended")
    assert result.status == "completed" and result.steps == 400
    assert [e[0] for e in result.evaluations] == [150, 200, 300, 400]  # one history
    with pytest.raises(ConfigError, match=r"train.steps=300 is invalid: .* already trained 400"):
        run(compose_cfg(*args, "train.steps=300"), tmp_path / "extended")
    with pytest.raises(Exception, match="another configuration.*model.eps"):
        run(compose_cfg(*args, "train.steps=500", "model.eps=0.5"), tmp_path / "extended")


def test_a_diverged_run_is_not_extended(tmp_path):
    run(compose_cfg(*SMALL, "optimizer.lr=1e38", "train.steps=20", "train.log_every=10"),
        tmp_path)
    before = (tmp_path / "results.json").read_text()
    run(compose_cfg(*SMALL, "optimizer.lr=1e38", "train.steps=40", "train.log_every=10"),
        tmp_path)
    assert (tmp_path / "results.json").read_text() == before


# --- the sweeper's pieces ---------------------------------------------------------------------

def test_budgets_and_promotion():
    assert rung_budgets(150, 2, 1200) == [150, 300, 600, 1200]
    assert rung_budgets(100, 3, 1000) == [100, 300, 900, 1000]
    assert rung_budgets(1000, 3, 1000) == [1000]
    outcomes = {
        0: {"status": "completed", "metric": 0.5}, 1: {"status": "diverged", "metric": 0.9},
        2: {"status": "completed", "metric": 0.7}, 3: {"status": "failed", "metric": None},
        4: {"status": "completed", "metric": 0.7}, 5: {"status": "missing", "metric": None},
    }
    assert ranked(outcomes)[:3] == [2, 4, 0]  # ties by job number; diverged ranks last
    assert promote(outcomes, 2) == [2, 4, 0]
    assert promote(outcomes, 3) == [2, 4]
    assert promote({0: {"status": "failed", "metric": None}}, 2) == []


def _halving(sweep, *extra, launcher=()):
    return run_cli("-m", *GRID, "train.steps=40", "train.eval_every=20", "train.log_every=10",
                   "hydra/sweeper=halving", "hydra.sweeper.min_steps=10", "hydra.sweeper.eta=2",
                   f"hydra.sweep.dir={sweep}", *launcher, *extra)


def _record(sweep):
    return json.loads((sweep / "halving.json").read_text())


def _mtimes(sweep):
    return {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_halving_sweep_end_to_end_and_rerun_trains_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _halving(sweep)
    assert proc.returncode == 0, proc.stderr
    record = _record(sweep)
    assert [r["budget"] for r in record["rungs"]] == [10, 20, 40]
    assert [len(r["jobs"]) for r in record["rungs"]] == [4, 2, 1]
    for r, rung in enumerate(record["rungs"][:-1]):  # the best half of each rung goes on
        # each job's validation accuracy at the rung's budget, from its own evaluations
        # ([step, test, validation]): the sweeper's default metric
        at_budget = {j: {int(e[0]): e[2] for e in RunResult.read(sweep / str(j)).evaluations}
                     [rung["budget"]] for j in rung["jobs"]}
        best = sorted(at_budget, key=lambda j: (-at_budget[j], j))[:len(at_budget) // 2]
        assert sorted(record["rungs"][r + 1]["jobs"]) == sorted(best)
    steps = {j: RunResult.read(sweep / str(j)).steps for j in range(4)}
    final = record["rungs"][-1]["jobs"][0]
    assert steps[final] == 40 and sorted(steps.values()) == [10, 10, 20, 40]
    assert "80 steps trained, 50.0% of the full grid's 160" in proc.stdout
    # the survivor's TensorBoard curve and evaluations run on in the same directory
    evals = RunResult.read(sweep / str(final)).evaluations
    assert [e[0] for e in evals] == [10, 20, 40]
    before = _mtimes(sweep)
    again = _halving(sweep)
    assert again.returncode == 0 and "job(s) to" not in again.stdout
    after = _mtimes(sweep)
    assert {p: t for p, t in after.items() if p.name != "multirun.yaml"} == {
        p: t for p, t in before.items() if p.name != "multirun.yaml"}
    # the collector knows the rungs: the deepest job ranks first, steps against the full grid
    assert collect_main([str(sweep)]) is None
    md = (sweep / "results.md").read_text()
    assert "80 steps trained against 160 for the full grid (50.0%)" in md
    jobs = collect([sweep]).jobs
    assert {j.path.name: j.rung for j in jobs}[str(final)] == 2
    assert f"| {sweep / str(final)} |" in md.split("## Best configuration per task")[1]


@pytest.mark.slow
def test_an_interrupted_halving_sweep_resumes_where_it_stopped(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert _halving(clean, "train.steps=160", "hydra.sweeper.min_steps=40").returncode == 0
    args = ["-m", *GRID, "train.steps=160", "train.eval_every=20", "train.log_every=10",
            "hydra/sweeper=halving", "hydra.sweeper.min_steps=40", "hydra.sweeper.eta=2",
            f"hydra.sweep.dir={killed}", "train.checkpoint_every=10"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:  # kill it inside rung 1, once a job has a checkpoint there
        try:
            rungs = _record(killed)["rungs"]
            job = rungs[1]["jobs"][0] if len(rungs) > 1 else None
            if job is not None and read_checkpoint(killed / str(job) / CHECKPOINT)["step"] > 40:
                break
        except Exception:  # noqa: BLE001 - files being written
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not _record(killed)["rungs"][1]["done"]
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "rung 1/3" not in resumed.stdout and "rung 2/3" in resumed.stdout
    a, b = _record(clean), _record(killed)
    assert [r["promoted"] for r in a["rungs"]] == [r["promoted"] for r in b["rungs"]]
    final = b["rungs"][-1]["jobs"][0]
    pa, pb = _params(clean / str(final)), _params(killed / str(final))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)  # as if never interrupted


@pytest.mark.slow
def test_halving_under_the_joblib_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _halving(sweep, launcher=("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))
    assert proc.returncode == 0, proc.stderr
    record = _record(sweep)
    assert [len(r["jobs"]) for r in record["rungs"]] == [4, 2, 1]
    assert RunResult.read(sweep / str(record["rungs"][-1]["jobs"][0])).steps == 40


def test_halving_on_slurm_composes():
    cfg = compose_cfg("+sweep=appendix_c", "model=gated_arnn", "dataset=mnist",
                      "hydra/sweeper=halving", "hydra/launcher=slurm", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("HalvingSweeper")
    assert cfg.hydra.sweeper.params["optimizer.lr"] == "0.1,0.2,0.3,0.4,0.5,0.75,1"
    assert (cfg.hydra.sweeper.min_steps, cfg.hydra.sweeper.eta) == (1000, 3)
    assert "SlurmLauncher" in cfg.hydra.launcher._target_ and cfg.train.steps == 50000


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["hydra.sweeper.eta=1", "hydra.sweeper.metric=loss",
                                 "train.steps=10,20"])
def test_bad_halving_settings_are_one_line(tmp_path, bad):
    proc = _halving(tmp_path / "sweep", bad)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is invalid" in proc.stderr, proc.stderr
    assert not (tmp_path / "sweep" / "0").exists()


# --- a refused job fails alone ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("launcher", [(), ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
                                      ("hydra/sweeper=halving", "hydra.sweeper.min_steps=10")])
def test_a_refused_job_fails_alone(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "model=arnn", "dataset=digits", "model.eps=0,0.1", "train.steps=20",
                   *SMALL, f"hydra.sweep.dir={sweep}", *launcher)
    assert "model.eps=0.0 is invalid" in proc.stderr
    refused = RunResult.read(sweep / "0")
    assert refused.status == "failed" and "model.eps=0.0 is invalid" in refused.error
    assert RunResult.read(sweep / "1").status == "completed"
    assert collect_main([str(sweep)]) is None
    md = (sweep / "results.md").read_text()
    assert f"- {sweep / '0'}: failed (ConfigError: model.eps=0.0 is invalid" in md


# --- the collector's ranking ------------------------------------------------------------------

def _fake_job(sweep, num, lr, final, best, rung_steps=100, status="completed", val=None,
              seed=0, at_best_val=None):
    """A job directory with a hand-written record: `val` is (final, best) validation accuracy."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    cfg = {"model": {"name": "arnn", "eps": 0.1, "gamma": 0.1, "sigma_w": 1.0,
                     "hidden_size": 16},
           "dataset": {"name": "digits"}, "optimizer": {"name": "sgd", "lr": lr}, "seed": seed}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    val_final, val_best = val or (None, None)
    RunResult(status, "arnn", "digits", "sgd", test_accuracy=final, best_test_accuracy=best,
              val_accuracy=val_final, best_val_accuracy=val_best,
              test_accuracy_at_best_val=at_best_val, steps=rung_steps, params=354,
              config={**cfg, "seed": seed}).write(job)


def _best_section(sweep) -> str:
    return (sweep / "results.md").read_text().split("## Best configuration per task")[1]


def test_collector_ranks_by_the_metric_asked(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_job(sweep, 0, 0.1, final=0.60, best=0.95)
    _fake_job(sweep, 1, 0.2, final=0.90, best=0.91)
    _fake_job(sweep, 2, 0.3, final=0.30, best=0.40)
    _fake_job(sweep, 3, 0.4, final=0.99, best=0.99, status="failed")  # never ranked
    collect_main([str(sweep), "--select", "test_accuracy"])
    assert f"| {sweep / '1'} |" in _best_section(sweep) and "lr=0.2" in _best_section(sweep)
    assert "not test results" in (sweep / "results.md").read_text()
    collect_main([str(sweep), "--select", "best_test_accuracy"])
    assert f"| {sweep / '0'} |" in _best_section(sweep) and "lr=0.1" in _best_section(sweep)


def test_selection_by_validation_never_looks_at_test(tmp_path):
    """lr=0.1 has the best test accuracy, lr=0.2 the best validation accuracy: the collector
    chooses lr=0.2 and reports its test accuracy; so does the halving sweeper's promotion."""
    sweep = tmp_path / "sweep"
    _fake_job(sweep, 0, 0.1, final=0.95, best=0.95, val=(0.70, 0.72), at_best_val=0.94)
    _fake_job(sweep, 1, 0.2, final=0.80, best=0.82, val=(0.85, 0.86), at_best_val=0.81)
    collect_main([str(sweep)])
    md = (sweep / "results.md").read_text()
    assert "chosen by best_val_accuracy" in md and "reported by test_accuracy_at_best_val" in md
    assert f"| {sweep / '1'} |" in _best_section(sweep)
    assert "| 86.0% (1) | 81.0% (1) | 80.0% (1) |" in _best_section(sweep)
    outcomes = {j: outcome(sweep / str(j), "val_accuracy") for j in (0, 1)}
    assert promote(outcomes, 2) == [1]
    assert promote({j: outcome(sweep / str(j), "test_accuracy") for j in (0, 1)}, 2) == [0]


def test_seeds_are_one_grid_point_with_their_spread(tmp_path):
    """Three seeds of lr=0.1 (validation 0.70, 0.80, 0.90: mean 0.80) against one lucky seed of
    lr=0.2 (0.85) and two of lr=0.3 (0.84, 0.82): lr=0.2 wins on the mean; the table shows
    mean ± std (n) for the point chosen."""
    sweep = tmp_path / "sweep"
    vals = [(0.1, 0.70, 0), (0.1, 0.80, 1), (0.1, 0.90, 2), (0.2, 0.85, 0), (0.3, 0.84, 0),
            (0.3, 0.82, 1)]
    for num, (lr, val, seed) in enumerate(vals):
        _fake_job(sweep, num, lr, final=val - 0.1, best=val, val=(val, val), seed=seed,
                  at_best_val=val - 0.1)
    collect_main([str(sweep), "--select", "val_accuracy"])
    best = _best_section(sweep)
    assert "lr=0.2" in best and "| 85.0% (1) | 75.0% (1) |" in best
    collect_main([str(sweep), "--select", "val_accuracy", "--out", str(tmp_path / "o")])
    rows = (tmp_path / "o" / "results.md").read_text()
    assert "Cells: mean ± standard deviation over seeds" in rows
    # the halving sweeper: the seeds of a grid point are promoted together, by their mean
    configs = [[f"optimizer.lr={lr}", f"seed={seed}"] for lr, _, seed in vals]
    outcomes = {j: outcome(sweep / str(j), "val_accuracy") for j in range(len(vals))}
    assert grid_points(configs)[0] == grid_points(configs)[2] == ("optimizer.lr=0.1",)
    assert promote(outcomes, 3, grid_points(configs)) == [3]  # 3 points: the best 1
    assert promote(outcomes, 2, grid_points(configs)) == [3]  # floor(3 / 2) = 1
    outcomes[3]["status"] = "diverged"  # its only seed: the point has no mean any more
    assert promote(outcomes, 2, grid_points(configs)) == [4, 5]


def test_choosing_by_validation_without_a_validation_split_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _fake_job(sweep, 0, 0.1, final=0.95, best=0.95)
    with pytest.raises(SystemExit) as info:
        collect_main([str(sweep)])
    assert info.value.code == 2
    assert "no job has a validation split" in capsys.readouterr().err
    assert not (sweep / "results.md").exists()


def test_collector_ranks_the_deepest_rung_first(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_job(sweep, 0, 0.1, final=0.95, best=0.95, rung_steps=10)  # high, but stopped early
    _fake_job(sweep, 1, 0.2, final=0.80, best=0.80, rung_steps=20)
    record = {"budgets": [10, 20], "configs": [["optimizer.lr=0.1"], ["optimizer.lr=0.2"]],
              "eta": 2, "metric": "test_accuracy",
              "rungs": [{"budget": 10, "jobs": [0, 1], "done": True, "promoted": [1],
                         "outcomes": {"0": {"status": "completed", "metric": 0.95, "steps": 10},
                                      "1": {"status": "completed", "metric": 0.7, "steps": 10}}},
                        {"budget": 20, "jobs": [1], "done": True, "promoted": [],
                         "outcomes": {"1": {"status": "completed", "metric": 0.8,
                                            "steps": 20}}}]}
    (sweep / "halving.json").write_text(json.dumps(record))
    collect_main([str(sweep), "--select", "test_accuracy"])
    md = (sweep / "results.md").read_text()
    assert f"| {sweep / '1'} |" in md.split("## Best configuration per task")[1]
    assert "30 steps trained against 40 for the full grid (75.0%)" in md
    rows = (sweep / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "rung" in header and rows[1].split(",")[header.index("rung")] == "0"


def test_ranking_by_validation_without_a_validation_split_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _halving(sweep, "dataset.val_size=0")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: dataset.val_size=0 is invalid: hydra.sweeper.metric="
                               "val_accuracy ranks by the validation split")
    assert not sweep.exists()


def test_ranking_by_test_is_allowed_with_a_warning(tmp_path):
    proc = _halving(tmp_path / "sweep", "hydra.sweeper.metric=test_accuracy",
                    "dataset.val_size=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: ranking by test_accuracy chooses on the test split" in proc.stdout
