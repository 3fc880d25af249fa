"""scripts/gpu_tables.sh, the one call that fills the paper's tables on a lent GPU, dry-run on
the CPU with tiny jobs: every Table 1 job side by side, the tables collected and packed, and a
budget that stops the jobs (SIGTERM: checkpointed, `interrupted`) which the same command
continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.fixtures import ROOT

TINY = ("model.hidden_size=8 dataset.train_limit=256 dataset.test_limit=100 dataset.val_size=100 "
        "train.eval_every=2 train.log_every=2 train.checkpoint_every=2 device=cpu")
JOBS = [f"{model}_{dataset}_s0" for model in ("lstm", "arnn", "gated_arnn")
        for dataset in ("mnist", "pmnist")]


def _script(tmp_path, mnist_dir, budget, steps, **env):
    env = {**os.environ, "MNIST": str(mnist_dir), "OUT": str(tmp_path / "out"), "SEEDS": "0",
           "PY": sys.executable, "PACK": str(tmp_path / "pack"), "MARGIN": "20",
           "EXTRA": f"{TINY} train.steps={steps}", **env}
    return subprocess.run(["bash", "scripts/gpu_tables.sh", str(budget)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _records(tmp_path):
    return {job: json.loads((tmp_path / "out" / "table1" / job / "results.json").read_text())
            for job in JOBS}


@pytest.mark.slow
def test_a_dry_run_fills_table_1_and_packs_it(tmp_path, mnist_dir):
    proc = _script(tmp_path, mnist_dir, 600, 4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 jobs started side by side" in proc.stdout and "CUDA MPS" not in proc.stdout
    assert {r["status"] for r in _records(tmp_path).values()} == {"completed"}
    table = (tmp_path / "out" / "table1" / "results.md").read_text()
    assert "## Table 1" in table and all(f"| {m} |" in table for m in ("lstm", "arnn"))
    with tarfile.open(tmp_path / "pack" / "tables.tgz") as packed:
        names = packed.getnames()
    assert all(f"out/table1/{job}/results.json" in names for job in JOBS)
    assert not any(n.endswith(".pt") for n in names)


@pytest.mark.slow
def test_the_budget_stops_the_jobs_and_the_same_command_continues_them(tmp_path, mnist_dir):
    # 70 s before the SIGTERM: six jobs start (imports, MNIST) and train, on two cores
    first = _script(tmp_path, mnist_dir, 90, 10**6)
    assert first.returncode == 0 and "job(s) sent SIGTERM" in first.stdout, first.stdout
    stopped = _records(tmp_path)
    assert {r["status"] for r in stopped.values()} == {"interrupted"}
    second = _script(tmp_path, mnist_dir, 90, 10**6)
    assert second.returncode == 0, second.stdout + second.stderr
    for job, record in _records(tmp_path).items():
        log = (tmp_path / "out" / "table1" / job / "console.log").read_text()
        assert "resumed from" in log and record["steps"] > stopped[job]["steps"], job
    with tarfile.open(tmp_path / "pack" / "checkpoints.tgz") as packed:
        assert len([n for n in packed.getnames() if n.endswith("last.pt")]) == len(JOBS)
