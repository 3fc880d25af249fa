"""The runner for long jobs: TensorBoard, checkpoints, exact resume, divergence, failures."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from arnn.checkpoint import CHECKPOINT, CheckpointError, save_atomic
from arnn.config import ConfigError, compose_config
from arnn.results import RunResult
from arnn.run_dir import run
from tests.fixtures import CONF, ROOT, SMALL, compose_cfg, read_checkpoint, run_cli


def _events(run_dir):
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def test_tensorboard_scalars_and_hparams_in_the_run_directory(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=20", "train.log_every=5", "train.eval_every=10")
    run(cfg, tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*")), "event file in the run dir itself"
    acc = _events(tmp_path)
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/accuracy", "train/grad_norm", "train/lr",
                "train/steps_per_s", "test/accuracy", "recurrent/max_real_eig",
                "recurrent/max_abs_eig", "recurrent/euler_rho", "recurrent/log10_growth",
                "hparams/best_test_accuracy"):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20]
    assert [e.step for e in acc.Scalars("test/accuracy")] == [10, 20]
    # W - W^T - gamma I keeps every eigenvalue's real part at -gamma while it trains.
    for event in acc.Scalars("recurrent/max_real_eig"):
        assert event.value == pytest.approx(-cfg.model.gamma, abs=1e-6)
    # rho = max|1 + eps mu(A)| of the final weights, computed here with numpy from the
    # checkpoint's W; rho^T over the digits' T = 64 steps.
    weight = read_checkpoint(tmp_path / CHECKPOINT)["model"]["cell.matrix.weight"].double()
    n, eps, gamma = 16, cfg.model.eps, cfg.model.gamma
    w = np.zeros((n, n))
    w[np.triu_indices(n, 1)] = weight.numpy()
    rho = np.abs(1 + eps * np.linalg.eigvals(w - w.T - gamma * np.eye(n))).max()
    assert acc.Scalars("recurrent/euler_rho")[-1].value == pytest.approx(rho, rel=1e-6)
    assert acc.Scalars("recurrent/log10_growth")[-1].value == pytest.approx(
        64 * math.log10(rho), rel=1e-5)
    hparams = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hparams and "_hparams_/session_start_info" in hparams
    assert b"gated_arnn" in hparams["_hparams_/session_start_info"]
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name not in ("checkpoints",)]


def _checkpoint_params(run_dir):
    return read_checkpoint(run_dir / CHECKPOINT)["model"]


RESUME_ARGS = (*SMALL, "train.steps=400", "train.checkpoint_every=7", "train.log_every=10",
               "train.eval_every=100")


@pytest.mark.slow
def test_kill_9_and_resume_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_cli(*RESUME_ARGS, f"hydra.run.dir={straight}").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *RESUME_ARGS, f"hydra.run.dir={killed}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = killed / CHECKPOINT
        if ckpt.exists() and read_checkpoint(ckpt)["step"] >= 50:
            break
        time.sleep(0.05)
    time.sleep(0.13)  # land somewhere between checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = read_checkpoint(killed / CHECKPOINT)
    assert 50 <= state["step"] < 400, "the kill must land mid-training"
    assert json.loads((killed / "results.json").read_text())["status"] == "running"
    resumed = run_cli(*RESUME_ARGS, f"hydra.run.dir={killed}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in (killed / "train.log").read_text()
    a, b = _checkpoint_params(straight), _checkpoint_params(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    result = json.loads((killed / "results.json").read_text())
    assert result["status"] == "completed" and result["steps"] == 400
    steps = [e.step for e in _events(killed).Scalars("train/loss")]
    assert steps == list(range(10, 401, 10))  # no duplicated or missing steps


def test_completed_run_is_not_retrained(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=5")
    run(cfg, tmp_path)
    before = (tmp_path / "results.json").read_text(), (tmp_path / CHECKPOINT).stat().st_mtime_ns
    run(cfg, tmp_path)
    after = (tmp_path / "results.json").read_text(), (tmp_path / CHECKPOINT).stat().st_mtime_ns
    assert before == after
    with pytest.raises(CheckpointError, match="another configuration.*model.eps"):
        run(compose_cfg(*SMALL, "train.steps=5", "model.eps=0.5"), tmp_path)


def test_resume_modes(tmp_path):
    with pytest.raises(ConfigError, match="train.resume='must'"):
        run(compose_cfg(*SMALL, "train.steps=2", "train.resume=must"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    cfg = compose_cfg(*SMALL, "train.steps=4", "train.checkpoint_every=2")
    run(cfg, tmp_path / "b")
    first = _checkpoint_params(tmp_path / "b")
    (tmp_path / "b" / "results.json").unlink()  # as if killed after the last checkpoint
    run(compose_cfg(*SMALL, "train.steps=4", "train.resume=never", "seed=1"), tmp_path / "b")
    second = _checkpoint_params(tmp_path / "b")
    assert not torch.equal(first["head.weight"], second["head.weight"])  # started over


@pytest.mark.slow
def test_truncated_checkpoint_is_reported_and_left_untouched(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=4", "train.checkpoint_every=2")
    run(cfg, tmp_path)
    (tmp_path / "results.json").unlink()
    ckpt = tmp_path / CHECKPOINT
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    half = ckpt.read_bytes()
    proc = run_cli(*SMALL, "train.steps=4", "train.checkpoint_every=2", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ckpt) in lines[0] and "truncated" in lines[0], proc.stderr
    assert ckpt.read_bytes() == half
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=2")
    run(cfg, tmp_path)
    (tmp_path / "results.json").unlink()
    ckpt = tmp_path / CHECKPOINT
    state = read_checkpoint(ckpt)
    state["model"]["head.weight"] = torch.zeros(10, 8)
    save_atomic(state, ckpt)
    saved = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match=r"does not fit this model: head.weight"):
        run(cfg, tmp_path)
    assert ckpt.read_bytes() == saved


@pytest.mark.slow
def test_absurd_but_finite_loss_is_diverged(tmp_path):
    """lr=1e12 keeps the loss finite (~1e14) but absurd: train.max_loss ends the run."""
    proc = run_cli("model=gated_arnn", "dataset=digits", "optimizer.lr=1e12", "train.steps=50",
                   "train.log_every=10", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "diverged" and result["steps"] == 10
    assert "> train.max_loss=1000" in result["divergence"]
    assert 1e3 < result["last_finite_loss"] < float("inf")
    assert "diverged at step 10: mean training loss" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_stability_warning_names_the_settings_and_a_fix(tmp_path):
    proc = run_cli("model.eps=1", "model.gamma=0.001", "train.steps=0",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr  # Hydra's console log
    lines = [line for line in output.splitlines() if "unstable Euler steps" in line]
    assert len(lines) == 1, output
    assert "eps=1, gamma=0.001, sigma_w=1, hidden_size=32, T=64" in lines[0]
    assert "model.eps=0.1" in lines[0]  # at T=64, eps 0.1 with gamma 0.001 is under 1e3
    assert "stability: rho = max|1 + eps mu(A)| =" in output
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["log10_growth"] > 3


@pytest.mark.slow
def test_divergence_is_recorded_and_exits_zero(tmp_path):
    proc = run_cli(*SMALL, "optimizer.lr=1e38", "train.steps=50", "train.log_every=10",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "diverged"
    assert 1 <= result["diverged_step"] <= 10 and result["steps"] == 10
    assert result["last_finite_loss"] is None or result["last_finite_loss"] > 0


def test_exception_in_the_loop_leaves_failed_results(tmp_path):
    def explode(loop):
        if loop.step == 3:
            raise RuntimeError("simulated fault at step 3")

    with pytest.raises(RuntimeError, match="simulated fault"):
        run(compose_cfg(*SMALL, "train.steps=10"), tmp_path, hooks=[explode])
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "failed" and "simulated fault at step 3" in result["error"]
    assert result["steps"] == 3


def _signal_at(step, signum):
    def hook(loop):
        if loop.step == step:
            signal.raise_signal(signum)  # lands after the step; handled at its boundary

    return hook


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_checkpoint_before_exiting(tmp_path, signum):
    args = (*SMALL, "train.steps=20", "train.checkpoint_every=8", "train.log_every=4")
    run(compose_cfg(*args), tmp_path / "straight")
    with pytest.raises(SystemExit) as info:
        run(compose_cfg(*args), tmp_path / "stopped", hooks=[_signal_at(11, signum)])
    assert info.value.code == 128 + signum
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)  # restored
    result = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert result["status"] == "interrupted" and result["steps"] == 11
    assert read_checkpoint(tmp_path / "stopped" / CHECKPOINT)["step"] == 11  # not 8
    run(compose_cfg(*args), tmp_path / "stopped")  # train.resume=auto: nothing lost
    a, b = _checkpoint_params(tmp_path / "straight"), _checkpoint_params(tmp_path / "stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_signal_during_a_checkpoint_write_leaves_it_whole(tmp_path, monkeypatch):
    from arnn import storage

    real = os.fsync
    calls = []

    def fsync(fd):  # the signal arrives while last.pt is being written
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and "last.pt" in os.readlink(
                f"/proc/self/fd/{fd}") and not calls:
            calls.append(fd)
            signal.raise_signal(signal.SIGUSR1)
        return real(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    with pytest.raises(SystemExit):
        run(compose_cfg(*SMALL, "train.steps=20", "train.checkpoint_every=5"), tmp_path)
    assert calls and read_checkpoint(tmp_path / CHECKPOINT)["step"] == 6  # 5 whole, then 6
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_sigterm_from_outside_checkpoints_a_cli_run(tmp_path):
    args = (*SMALL, "train.steps=3000", "train.checkpoint_every=1000", "train.eval_every=3000",
            f"hydra.run.dir={tmp_path}")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and "step 100/" not in _read(tmp_path / "train.log"):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    result = json.loads((tmp_path / "results.json").read_text())
    saved = read_checkpoint(tmp_path / CHECKPOINT)["step"]
    assert result["status"] == "interrupted" and result["steps"] == saved and saved >= 100
    assert "SIGTERM at step" in _read(tmp_path / "train.log")


def _read(path):
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_fingerprints_of_older_versions_still_match(tmp_path):
    """Before presets, every model recorded eps/gamma, adagrad a momentum and every dataset all
    seeds: settings a model does not have are not compared, real differences still are."""
    from arnn.identity import check_same_run as _check_same_run
    from arnn.identity import fingerprint as config_fingerprint

    cfg = compose_cfg("model=lstm", "optimizer=adagrad", "train.steps=5")
    current = config_fingerprint(cfg)
    old = json.loads(json.dumps(current))
    old["model"].update(eps=0.1, gamma=0.1, backend="auto")
    old["optimizer"]["momentum"] = 0.9
    old["dataset"].update(noise_seed=0, permutation_seed=0, paper_steps=50000)
    old["train"]["steps"] = 2000
    _check_same_run(tmp_path / "results.json", old, current)
    old["dataset"]["train_limit"] = 100
    old["dataset"]["split_seed"] = 1
    with pytest.raises(CheckpointError, match=r"dataset.split_seed: 1 there, 0 now; "
                                              r"dataset.train_limit: 100 there, None now"):
        _check_same_run(tmp_path / "results.json", old, current)


def test_a_run_directory_of_the_previous_layout_resumes_bit_identically(tmp_path):
    """tests/data/run_before_redesign: a digits run made by the code before the runner was split
    (the commit before it), killed with SIGKILL at step 120 of 300 (results.json `running`,
    checkpoint at step 120). Resumed now, it ends where an uninterrupted run of that code ended
    (straight_results.json) and bit-identical to an uninterrupted run of this code."""
    fixture = Path(__file__).parent / "data" / "run_before_redesign"
    args = (*SMALL, "train.steps=300", "train.checkpoint_every=40", "train.log_every=20",
            "train.eval_every=100", "dataset.val_size=0")  # as then: no validation split
    killed = tmp_path / "killed"
    shutil.copytree(fixture, killed)
    assert json.loads((killed / "results.json").read_text())["status"] == "running"
    assert read_checkpoint(killed / CHECKPOINT)["step"] == 120
    run(compose_cfg(*args), killed)
    run(compose_cfg(*args), tmp_path / "straight")
    a, b = _checkpoint_params(tmp_path / "straight"), _checkpoint_params(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    expected = json.loads((fixture / "straight_results.json").read_text())
    for run_dir in (killed, tmp_path / "straight"):
        result = json.loads((run_dir / "results.json").read_text())
        assert {k: result[k] for k in expected} == expected


def test_unrelated_edits_and_the_backend_do_not_change_a_runs_identity(tmp_path):
    """Editing the LSTM's hidden size (its preset) does not block extending an arnn run, nor
    does naming the backend `auto` resolves to on a CPU; a setting of the run itself does."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    args = ["model=arnn", *SMALL, "train.checkpoint_every=2"]
    run(compose_config([*args, "train.steps=4"], conf), tmp_path / "run")
    lstm = conf / "preset" / "lstm_digits.yaml"
    lstm.write_text(lstm.read_text().replace("hidden_size: 32", "hidden_size: 64"))
    run(compose_config([*args, "train.steps=6", "model.backend=torch"], conf), tmp_path / "run")
    assert RunResult.read(tmp_path / "run").steps == 6
    arnn = conf / "preset" / "arnn_digits.yaml"
    arnn.write_text(arnn.read_text().replace("sigma_w: 1.0", "sigma_w: 2.0"))
    with pytest.raises(CheckpointError, match=r"model.sigma_w: 1.0 there, 2.0 now"):
        run(compose_config([*args, "train.steps=8"], conf), tmp_path / "run")
