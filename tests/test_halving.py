"""The successive-halving sweeper: budgets, promotion by the one rule of a grid point's score,
records that count only for the configuration launched, end to end on every launcher, resuming."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from arnn.checkpoint import CHECKPOINT
from arnn.collect import main as collect_main
from arnn.halving_record import HalvingRecord, Outcome, write_halving
from arnn.identity import fingerprint
from arnn.report.jobs import collect
from arnn.results import ResultsError, RunResult, Status, evaluation_summary, stalled
from arnn.storage import Folder
from arnn.sweeps import budgets, earlier_budgets, outcome
from hydra_plugins.arnn_halving_sweeper._impl import HalvingSweeperImpl, promote, ranked
from tests.fixtures import (
    ROOT,
    SMALL,
    checkpoint_params,
    compose_cfg,
    job_return,
    read_checkpoint,
    run_cli,
)

GRID = ("model=arnn", "model.eps=0.01,0.1", "optimizer.lr=0.1,0.3", *SMALL)


def test_budgets_and_promotion():
    assert budgets(150, 2, 1200) == [150, 300, 600, 1200]
    assert budgets(1000, 3, 50000) == [1000, 3000, 9000, 27000, 50000]  # 27000 x 1.85
    # a rung the final budget exceeds by less than sqrt(eta) is left out, the first excepted
    assert budgets(100, 3, 1000) == [100, 300, 1000]
    assert budgets(88, 3, 800) == [88, 264, 800]
    assert budgets(700, 3, 800) == [700, 800] and budgets(1000, 3, 1000) == [1000]
    assert earlier_budgets(100, 3, 1000) == [100, 300, 900, 1000]
    outcomes = {
        0: Outcome("completed", 0.5), 1: Outcome("diverged", 0.9), 2: Outcome("completed", 0.7),
        3: Outcome("failed"), 4: Outcome("completed", 0.7), 5: Outcome("missing"),
    }
    assert ranked(outcomes)[:3] == [2, 4, 0]  # ties by job number; diverged ranks last
    assert promote(outcomes, 2) == [2, 4, 0]
    assert promote(outcomes, 3) == [2, 4]
    assert promote({0: Outcome("failed")}, 2) == []



def test_a_seed_that_did_not_complete_counts_zero_in_its_points_mean():
    """lr=0.1: seeds 0.9 and failed (mean 0.45); lr=0.3: 0.6 and 0.5 (mean 0.55): lr=0.3 goes
    on, and a point's seeds go on together."""
    configs = [["optimizer.lr=0.1", "seed=0"], ["optimizer.lr=0.1", "seed=1"],
               ["optimizer.lr=0.3", "seed=0"], ["optimizer.lr=0.3", "seed=1"]]
    outcomes = {0: Outcome("completed", 0.9), 1: Outcome("failed"),
                2: Outcome("completed", 0.6), 3: Outcome("completed", 0.5)}
    assert promote(outcomes, 2, configs) == [2, 3]
    outcomes[1] = Outcome("completed", 0.3)  # mean 0.6 now
    assert promote(outcomes, 2, configs) == [0, 1]


def test_a_sweep_begun_with_the_earlier_budgets_goes_on_with_them(tmp_path):
    """Before 2026-12-02 a rung at 900 of 1000 steps was kept; such a sweep, rerun, continues as
    it began, and one with budgets of neither rule is refused."""
    sweeper = HalvingSweeperImpl(None, min_steps=100, eta=3, metric="val_accuracy")
    configs = [["model.eps=0.1"], ["model.eps=1.0"]]
    begun = {"version": 1, "metric": "val_accuracy", "eta": 3, "min_steps": 100,
             "budgets": [100, 300, 900, 1000], "configs": configs, "rungs": []}
    write_halving(Folder(tmp_path), HalvingRecord.from_json(begun))
    record = sweeper._load_record(tmp_path, configs, budgets(100, 3, 1000))
    assert record.budgets == [100, 300, 900, 1000]
    write_halving(Folder(tmp_path), HalvingRecord.from_json({**begun,
                                                             "budgets": [100, 200, 1000]}))
    with pytest.raises(ResultsError, match="holds another halving sweep"):
        sweeper._load_record(tmp_path, configs, budgets(100, 3, 1000))


class _FakeLauncher:
    """Writes each launched job's results.json (validation accuracy `final`, best `best`, the
    test accuracies the other way round: a sweeper ranking by test would choose others) and
    returns Hydra's job returns for a run of `cfg`; `foreign` jobs get another configuration's
    record, `refused` jobs a failed launch."""

    def __init__(self, sweep, values, foreign=(), refused=()):
        self.sweep, self.values, self.foreign, self.refused = sweep, values, foreign, refused
        self.cfg = compose_cfg(*SMALL)

    def launch(self, batch, initial_job_idx):
        returns = []
        for overrides in batch:
            job = int(next(o for o in overrides if o.startswith("hydra.sweep.subdir=")
                           ).split("=")[1].strip("'"))
            steps = int(next(o for o in overrides if o.startswith("train.steps=")).split("=")[1])
            final, best = self.values[job]
            config = fingerprint(self.cfg)
            if job in self.foreign:
                config = {**config, "seed": 99}
            evaluations = [[steps // 2, 1 - best, best], [steps, 1 - final, final]]
            RunResult(Status.COMPLETED, "arnn", "digits", "sgd", num_val=10, steps=steps,
                      evaluations=evaluations, config=config, **evaluation_summary(evaluations)
                      ).write(self.sweep / str(job))
            failure = RuntimeError("refused") if job in self.refused else None
            returns.append(job_return(self.cfg, failure))
        return returns


@pytest.mark.parametrize("metric,promoted", [("val_accuracy", [1, 3]),
                                             ("best_val_accuracy", [0, 2]),
                                             ("test_accuracy", [2, 0])])
def test_halving_promotes_by_the_metric_it_is_given(tmp_path, metric, promoted):
    values = {0: (0.5, 0.95), 1: (0.8, 0.8), 2: (0.4, 0.9), 3: (0.7, 0.7)}
    sweeper = HalvingSweeperImpl(None, min_steps=10, eta=2, metric=metric)
    sweeper.launcher = _FakeLauncher(tmp_path, values)
    record = HalvingRecord(metric, 2, 10, [10, 20], [[f"model.eps=0.{j + 1}"] for j in values])
    assert sweeper._run_rung(Folder(tmp_path), record, 0, list(values), []) == promoted
    outcomes = record.rungs[0].outcomes
    column = {"val_accuracy": lambda v: v[0], "best_val_accuracy": lambda v: v[1],
              "test_accuracy": lambda v: 1 - v[0]}[metric]
    assert {j: o.metric for j, o in outcomes.items()} == pytest.approx(
        {j: column(v) for j, v in values.items()})


def test_a_record_of_another_configuration_or_a_failed_launch_is_a_failed_job(tmp_path):
    """Job 1's results.json belongs to another configuration (left by an earlier sweep in the
    same directory) and job 2's launch failed: neither counts, whatever its numbers say."""
    values = {0: (0.5, 0.5), 1: (0.99, 0.99), 2: (0.98, 0.98), 3: (0.4, 0.4)}
    sweeper = HalvingSweeperImpl(None, min_steps=10, eta=2, metric="val_accuracy")
    sweeper.launcher = _FakeLauncher(tmp_path, values, foreign=(1,), refused=(2,))
    record = HalvingRecord("val_accuracy", 2, 10, [10, 20],
                           [[f"model.eps=0.{j + 1}"] for j in values])
    assert sweeper._run_rung(Folder(tmp_path), record, 0, list(values), []) == [0, 3]
    outcomes = record.rungs[0].outcomes
    assert outcomes[1].status == outcomes[2].status == "failed"
    assert "another configuration's (seed: 99 there, 0 now)" in outcomes[1].error
    assert "the job failed: refused" in outcomes[2].error
    assert outcome(tmp_path / "1", "val_accuracy").status == "completed"  # unlaunched: read


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
    # Hydra rewrites multirun.yaml; the sweep lock records its new holder
    rewritten = {"multirun.yaml", ".arnn-sweep.lock"}
    assert {p: t for p, t in after.items() if p.name not in rewritten} == {
        p: t for p, t in before.items() if p.name not in rewritten}
    # the collector knows the rungs: the deepest job ranks first, steps against the full grid
    assert collect_main([str(sweep)]) is None
    md = (sweep / "results.md").read_text()
    assert "80 steps trained against 160 for the full grid (50.0%)" in md
    jobs = collect([sweep]).jobs
    assert {j.path.name: j.rung for j in jobs}[str(final)] == 3  # the third, numbered from 1
    assert f"| {sweep / str(final)} |" in md.split("## Best configuration per task")[1]


@pytest.mark.slow
def test_a_halving_sweep_with_patience_ranks_runs_that_stopped_before_their_budget(tmp_path):
    """train.patience=1 with an evaluation every 2 steps: a job may end before its rung's
    budget; it is recorded, ranked and promoted as completed, and a promoted job that would
    stop there again is not trained again. An evaluation at a rung's budget ends the run
    there anyway: a job stalled at it stops at its first evaluation in the next rung."""
    sweep = tmp_path / "sweep"
    proc = _halving(sweep, "train.eval_every=2", "train.patience=1")
    assert proc.returncode == 0, proc.stderr
    record = _record(sweep)
    results = {j: RunResult.read(sweep / str(j)) for j in range(4)}
    assert {r.status for r in results.values()} == {Status.COMPLETED}
    early = [j for j, r in results.items() if r.stopped_early]
    assert early, "no job stopped early: the test shows nothing"
    budgets = [rung["budget"] for rung in record["rungs"]]
    for rung in record["rungs"]:
        for job, o in rung["outcomes"].items():
            result = results[int(job)]
            assert o["status"] == "completed" and o["steps"] <= rung["budget"]
            if o["steps"] < rung["budget"]:  # stopped early, by the rule of its evaluations
                evaluations = result.evaluations
                assert result.stopped_early and result.steps == o["steps"]
                assert stalled(evaluations, 1) is not None
                assert not [e for i, e in enumerate(evaluations[:-1], 1)
                            if e[0] not in budgets and stalled(evaluations[:i], 1)]
    assert [len(r["jobs"]) for r in record["rungs"]] == [4, 2, 1]
    before = _mtimes(sweep)
    assert _halving(sweep, "train.eval_every=2", "train.patience=1").returncode == 0
    rewritten = {"multirun.yaml", ".arnn-sweep.lock"}
    assert {p: t for p, t in _mtimes(sweep).items() if p.name not in rewritten} == {
        p: t for p, t in before.items() if p.name not in rewritten}


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
    pa, pb = checkpoint_params(clean / str(final)), checkpoint_params(killed / str(final))
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


def test_ranking_by_validation_without_a_validation_split_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _halving(sweep, "dataset.val_size=0")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: dataset.val_size=0 is invalid: hydra.sweeper.metric="
                               "val_accuracy ranks by the validation split")
    assert not sweep.exists()


@pytest.mark.parametrize("schedule", ["train.lr_schedule=cosine",
                                      "train.lr_schedule=constant,cosine"])
def test_a_schedule_is_refused_where_rungs_extend_runs(tmp_path, schedule):
    """A cosine run ends at its train.steps and is not extended: halving (which extends each
    job from rung to rung) refuses it in one line before any job, as a setting or a sweep axis."""
    sweep = tmp_path / "sweep"
    proc = _halving(sweep, schedule)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: train.lr_schedule='cosine' is invalid: the halving "
                               "sweeper extends each run from rung to rung")
    assert not sweep.exists()


def test_ranking_by_test_is_allowed_with_a_warning(tmp_path):
    proc = _halving(tmp_path / "sweep", "hydra.sweeper.metric=test_accuracy",
                    "dataset.val_size=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: ranking by test_accuracy chooses on the test split" in proc.stdout


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



def test_a_validation_split_of_zero_set_in_a_config_file_is_refused(tmp_path):
    """dataset.val_size=0 from a sweep file, not the command line: still refused up front."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "sweep" / "no_val.yaml").write_text("# @package _global_\ndataset:\n  val_size: 0\n")
    env = {**os.environ, "ARNN_CONFIG_DIR": str(conf)}
    proc = subprocess.run([sys.executable, "-c", "from arnn.cli import main; main()", "-m",
                           *GRID, "+sweep=no_val", "train.steps=20", "hydra/sweeper=halving",
                           "hydra.sweeper.min_steps=10", f"hydra.sweep.dir={tmp_path / 's'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "dataset.val_size=0 is invalid" in proc.stderr and not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_halving_sweep_over_another_sweeps_directory_counts_none_of_its_records(tmp_path):
    """The issue's sequence: a seed sweep into S, then a halving sweep into S. Jobs 0-3 hold
    the seed sweep's records: refused by the runner, failed for the sweeper, never ranked."""
    sweep = tmp_path / "S"
    seeds = run_cli("-m", *SMALL, "model=arnn", "model.eps=0.05", "seed=0,1,2,3",
                    "train.steps=20", f"hydra.sweep.dir={sweep}")
    assert seeds.returncode == 0, seeds.stderr[-2000:]
    proc = _halving(sweep)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rung,) = _record(sweep)["rungs"]
    assert {o["status"] for o in rung["outcomes"].values()} == {"failed"} and rung["promoted"] == []
    assert proc.stdout.count("failed, not counted: the job failed: ") == 4
    assert "no grid point completed" in proc.stdout
    assert RunResult.read(sweep / "0").config["model"]["eps"] == 0.05  # left as it was
