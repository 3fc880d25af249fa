"""Sweeps: the Appendix C grids, the smoke sweep on every launcher, resuming, collecting."""

import csv
import itertools
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from arnn.collect import main as collect_main
from arnn.report.jobs import collect
from tests.fixtures import ROOT, SMALL, compose_cfg, run_cli

pytestmark = pytest.mark.slow  # every test here runs sweeps through train.py

SIGMA_W = ["0", "1", "2", "4", "8", "16"]
LR = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.75", "1"]
EPS = ["0.01", "0.1", "1"]
GAMMA = ["0.001", "0.01", "0.1", "1.0"]


def _grid(*overrides):
    cfg = compose_cfg("+sweep=appendix_c", *overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = {
        o.key_or_group: list(o.sweep_string_iterator()) if o.is_sweep_override()
        else [o.get_value_element_as_str()]
        for o in parsed
    }
    return axes, cfg


@pytest.mark.parametrize("model,jobs", [("arnn", 1008), ("gated_arnn", 1008), ("lstm", 84),
                                        ("ablation", 252)])
def test_appendix_c_grid(model, jobs):
    axes, cfg = _grid(f"model={model}", "dataset=mnist")
    assert axes["model.sigma_w"] == SIGMA_W
    assert axes["optimizer.lr"] == LR
    assert axes["optimizer"] == ["sgd", "adagrad"]
    swept = {k: v for k, v in axes.items() if len(v) > 1}
    if model in ("arnn", "gated_arnn"):
        assert axes["model.eps"] == EPS and axes["model.gamma"] == GAMMA
    elif model == "ablation":
        assert axes["model.eps"] == EPS and "model.gamma" not in swept
    else:
        assert "model.eps" not in swept and "model.gamma" not in swept
    assert len(list(itertools.product(*axes.values()))) == jobs
    assert cfg.train.steps == 50000 and cfg.train.batch_size == 128


def test_appendix_c_iterations_per_dataset():
    for dataset, steps in (("mnist", 50000), ("pmnist", 50000), ("cifar10", 50000),
                           ("noise_cifar10", 10000)):
        assert _grid("dataset=" + dataset)[1].train.steps == steps


def _statuses(sweep_dir):
    return {p.parent.name: json.loads(p.read_text())["status"]
            for p in sweep_dir.glob("*/results.json")}


def _collected(sweep_dir, rows):
    collect_main([str(sweep_dir)])
    with open(sweep_dir / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == rows
    md = (sweep_dir / "results.md").read_text()
    png = sweep_dir / "results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    return table, md


LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_smoke_sweep_end_to_end(tmp_path, launcher):
    sweep = tmp_path / launcher
    proc = run_cli("-m", "+sweep=smoke", *LAUNCHERS[launcher], f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _statuses(sweep) == {str(i): "completed" for i in range(4)}
    table, md = _collected(sweep, 4)
    assert {(r["model"], r["lr"]) for r in table} == {
        (m, lr) for m in ("arnn", "gated_arnn") for lr in ("0.1", "0.3")
    }
    assert all(r["status"] == "completed" and r["steps"] == "30" for r in table)
    assert "| digits | arnn |" in md and "| digits | gated_arnn |" in md
    assert "| 4 | 0 | 0 | 0 | 0 | 0 | 0 | 4 |" in md


def test_rerunning_a_sweep_trains_only_unfinished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "+sweep=smoke", f"hydra.sweep.dir={sweep}")
    assert run_cli(*args).returncode == 0
    stamp = {p: p.stat().st_mtime_ns for p in sweep.glob("*/results.json")}
    assert run_cli(*args).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/results.json")} == stamp
    assert "not trained again" in (sweep / "0" / "train.log").read_text()
    (sweep / "2" / "results.json").unlink()
    shutil.rmtree(sweep / "2" / "checkpoints")
    assert run_cli(*args).returncode == 0
    after = {p: p.stat().st_mtime_ns for p in sweep.glob("*/results.json")}
    changed = [p.parent.name for p in after if after[p] != stamp.get(p)]
    assert changed == ["2"]
    assert json.loads((sweep / "2" / "results.json").read_text())["steps"] == 30


def test_sweep_with_diverging_and_failing_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "+sweep=smoke", "model=gated_arnn", "optimizer.lr=0.1,1e38",
                   "dataset=digits,mnist", f"data_dir={tmp_path / 'empty'}",
                   "dataset.download=false", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0  # Hydra reports the failed jobs after running all of them
    statuses = _statuses(sweep)
    assert sorted(statuses.values()) == ["completed", "diverged", "failed", "failed"]
    found = collect([sweep])
    jobs, missing = found.jobs, found.missing
    assert missing == 0 and len(jobs) == 4
    table, md = _collected(sweep, 4)
    assert "| 1 | 1 | 0 | 2 | 0 | 0 | 0 | 4 |" in md
    failed = [r for r in table if r["status"] == "failed"]
    assert all("mnist: files not found" in r["error"] for r in failed)
    assert "Jobs without a final result" in md


def test_collect_counts_jobs_not_started_yet(tmp_path):
    sweep = tmp_path / "sweep"
    assert run_cli("-m", "+sweep=smoke", f"hydra.sweep.dir={sweep}").returncode == 0
    shutil.rmtree(sweep / "3")
    (sweep / "1" / "results.json").write_text(
        (sweep / "1" / "results.json").read_text().replace('"completed"', '"running"')
    )
    found = collect([sweep])
    jobs, missing = found.jobs, found.missing
    assert missing == 1 and [j.status for j in jobs].count("running") == 1
    _, md = _collected(sweep, 3)
    assert "| 2 | 0 | 0 | 0 | 1 | 0 | 1 | 4 |" in md


def test_slurm_launcher_config_is_ready():
    cfg = compose_cfg("+sweep=appendix_c", "hydra/launcher=slurm",
                      "hydra.launcher.partition=gpu", return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert launcher.array_parallelism == 64 and launcher.max_num_timeout == 20
    assert launcher.timeout_min == 720


def test_table_1_is_one_command_with_each_pairs_preset(tmp_path, mnist_dir):
    """README's Table 1 command: each job of the multirun gets its own pair's preset (the
    defaults-list interpolation is resolved per job), and the collector lays out Table 1."""
    sweep = tmp_path / "table1"
    proc = run_cli("-m", "model=lstm,gated_arnn", "dataset=mnist,pmnist", f"data_dir={mnist_dir}",
                   "train.steps=0", "dataset.test_limit=20", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(sweep.glob("*/.hydra/config.yaml"))
    assert len(jobs) == 4
    for path in jobs:
        job = OmegaConf.load(path)
        preset = compose_cfg(f"model={job.model.name}", f"dataset={job.dataset.name}",
                             f"data_dir={mnist_dir}", "train.steps=0", "dataset.test_limit=20")
        for key in ("model", "optimizer"):
            assert job[key] == preset[key], (path, key)
    collect_main([str(sweep), "--out", str(tmp_path)])
    table = (tmp_path / "results.md").read_text().split("## Table 1")[1].split("##")[0]
    lstm, gated = (next(r for r in table.splitlines() if r.startswith(f"| {m} |"))
                   for m in ("lstm", "gated_arnn"))
    assert lstm.count("%") == 4 and gated.count("%") == 4  # ours and the paper's, both tasks


def test_a_second_sweep_on_a_sweep_directory_is_refused_and_the_first_goes_on(tmp_path):
    args = ["-m", *SMALL, "train.steps=300", "optimizer.lr=0.1,0.3", "train.log_every=50"]
    clean = run_cli(*args, f"hydra.sweep.dir={tmp_path / 'clean'}")
    assert clean.returncode == 0, clean.stderr[-2000:]
    sweep = tmp_path / "W"
    first = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args,
                              f"hydra.sweep.dir={sweep}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (sweep / "0" / "train.log").exists():
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # held mid-sweep (its lock with it), however fast it trains
    try:
        second = run_cli(*args, f"hydra.sweep.dir={sweep}")
    finally:
        first.send_signal(signal.SIGCONT)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr[-2000:]
    assert f"sweep directory {sweep} is in use by pid {first.pid}" in lines[0]
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    for job in ("0", "1"):
        a, b = (json.loads((d / job / "results.json").read_text()) for d in (tmp_path / "clean",
                                                                             sweep))
        assert (a["status"], a["evaluations"]) == (b["status"], b["evaluations"])
