"""docs/presets/table1.sh, the commands behind Table 1's presets, checked without training: PY is
a stand-in that prints the arguments it was given, and Hydra then composes them (`--cfg hydra`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.fixtures import ROOT, run_cli


def _table1(tmp_path, *args: str) -> subprocess.CompletedProcess:
    stand_in = tmp_path / "py"
    stand_in.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[2:]))\n")
    stand_in.chmod(0o755)
    env = {**os.environ, "PY": str(stand_in), "OUT": str(tmp_path / "out"), "MNIST": "/mnist"}
    return subprocess.run(["bash", "docs/presets/table1.sh", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _train_args(tmp_path, *args: str) -> list[str]:
    proc = _table1(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("args, dataset, seed", [
    (("full", "arnn"), "mnist", 0),
    (("full", "gated_arnn", "1"), "mnist", 1),
    (("full", "arnn", "2", "pmnist"), "pmnist", 2),
])
def test_full_puts_every_seed_and_task_in_one_folder(tmp_path, args, dataset, seed):
    """One folder, so that `collect` fills both of Table 1's columns from it."""
    train = _train_args(tmp_path, *args)
    assert f"dataset={dataset}" in train and f"seed={seed}" in train
    assert f"hydra.run.dir={tmp_path}/out/table1/{args[1]}_{dataset}_s{seed}" in train


@pytest.mark.slow  # a train.py subprocess
def test_a_variant_runs_in_a_folder_hydra_accepts(tmp_path):
    """The overrides name the folder; `=` and `,` in it must reach Hydra quoted."""
    train = _train_args(tmp_path, "variant", "arnn", "model.gamma=0.1", "optimizer.lr=1.0")
    assert "model.gamma=0.1" in train and "optimizer.lr=1.0" in train and "model=arnn" in train
    proc = run_cli(*train, "--cfg", "hydra", "--package", "hydra.run")
    assert proc.returncode == 0, proc.stderr
    run_dir = yaml.safe_load(proc.stdout)["dir"]  # the printed package is hydra.run
    assert run_dir == f"{tmp_path}/out/variant/arnn_model.gamma=0.1,optimizer.lr=1.0"


def test_an_unknown_subcommand_prints_the_usage(tmp_path):
    proc = _table1(tmp_path, "pmnist", "arnn")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "usage: bash docs/presets/table1.sh" in proc.stderr
    assert "full MODEL [SEED [DATASET]]" in proc.stderr


def test_saturation_measures_the_folders_full_and_variant_write(tmp_path):
    """Its trained runs are those `full arnn 1` made with the 2026-12-04 preset and `variant arnn
    optimizer.lr=0.3 model.sigma_w=1` (today's preset); its model at initialisation keeps the
    2026-12-04 preset's sigma_w 4, as docs/presets.md's saturation table says."""
    args = _train_args(tmp_path, "saturation", "1")
    runs = [args[i + 1] for i, arg in enumerate(args) if arg == "--run"]
    assert runs[0] == f"{tmp_path}/out/table1/arnn_mnist_s1"
    assert runs[-1] == f"{tmp_path}/out/variant/arnn_optimizer.lr=0.3,model.sigma_w=1"
    assert args[args.index("--set") + 1] == "model.sigma_w=4"
    assert (tmp_path / "out" / "docs" / "saturation" / "saturation.txt").read_text() \
        == json.dumps(args) + "\n"
