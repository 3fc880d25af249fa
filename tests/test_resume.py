"""Long runs: checkpoints, exact resume, extension, best.pt, stop signals, a run's identity."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arnn import host
from arnn.checkpoint import BEST_CHECKPOINT, CHECKPOINT, CheckpointError, save_atomic
from arnn.errors import ConfigError
from arnn.loop import evaluate
from arnn.results import RunResult, Status
from arnn.run_dir import Extend, Skip, plan
from arnn.schema import compose_config
from arnn.storage import Folder
from tests.fixtures import (
    CONF,
    ROOT,
    SMALL,
    built,
    checkpoint_params,
    compose_cfg,
    events,
    interrupt_at,
    read_checkpoint,
    run_cli,
    run_cli_patched,
    run_config,
)

# 2000 steps: a kill lands mid-training however fast a step is
RESUME_ARGS = (*SMALL, "train.steps=2000", "train.checkpoint_every=7", "train.log_every=10",
               "train.eval_every=100")
FIXTURE_CPU = "AMD EPYC (AVX512)"  # arnn.host.describe's `cpu` where run_before_redesign was made


@pytest.mark.slow
def test_kill_9_and_resume_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_cli(*RESUME_ARGS, f"hydra.run.dir={straight}").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *RESUME_ARGS, f"hydra.run.dir={killed}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # Killed between checkpoints (every 7 steps): once the log reached step 60, after the
    # checkpoint of step 56, however long that takes on a busy machine.
    deadline = time.time() + 600
    while time.time() < deadline and "step 60/" not in _read(killed / "train.log"):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = read_checkpoint(killed / CHECKPOINT)
    assert 50 <= state["step"] < 2000, "the kill must land mid-training"
    assert json.loads((killed / "results.json").read_text())["status"] == "running"
    resumed = run_cli(*RESUME_ARGS, f"hydra.run.dir={killed}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in (killed / "train.log").read_text()
    a, b = checkpoint_params(straight), checkpoint_params(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    result = json.loads((killed / "results.json").read_text())
    assert result["status"] == "completed" and result["steps"] == 2000
    steps = [e.step for e in events(killed).Scalars("train/loss")]
    assert steps == list(range(10, 2001, 10))  # no duplicated or missing steps


def test_completed_run_is_not_retrained(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=5")
    run_config(cfg, tmp_path)
    before = (tmp_path / "results.json").read_text(), (tmp_path / CHECKPOINT).stat().st_mtime_ns
    run_config(cfg, tmp_path)
    after = (tmp_path / "results.json").read_text(), (tmp_path / CHECKPOINT).stat().st_mtime_ns
    assert before == after
    with pytest.raises(CheckpointError, match="another configuration.*model.eps"):
        run_config(compose_cfg(*SMALL, "train.steps=5", "model.eps=0.5"), tmp_path)


def test_resume_modes(tmp_path):
    with pytest.raises(ConfigError, match="train.resume='must'"):
        run_config(compose_cfg(*SMALL, "train.steps=2", "train.resume=must"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    cfg = compose_cfg(*SMALL, "train.steps=4", "train.checkpoint_every=2")
    run_config(cfg, tmp_path / "b")
    first = checkpoint_params(tmp_path / "b")
    (tmp_path / "b" / "results.json").unlink()  # as if killed after the last checkpoint
    run_config(compose_cfg(*SMALL, "train.steps=4", "train.resume=never", "seed=1"), tmp_path / "b")
    second = checkpoint_params(tmp_path / "b")
    assert not torch.equal(first["head.weight"], second["head.weight"])  # started over


@pytest.mark.slow
def test_truncated_checkpoint_is_reported_and_left_untouched(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=4", "train.checkpoint_every=2")
    run_config(cfg, tmp_path)
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
    run_config(cfg, tmp_path)
    (tmp_path / "results.json").unlink()
    ckpt = tmp_path / CHECKPOINT
    state = read_checkpoint(ckpt)
    state["model"]["head.weight"] = torch.zeros(10, 8)
    with Folder(tmp_path) as folder:
        save_atomic(state, folder, CHECKPOINT)
    saved = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match=r"does not fit this model: head.weight"):
        run_config(cfg, tmp_path)
    assert ckpt.read_bytes() == saved


def _signal_at(step, signum):
    def hook(loop):
        if loop.step == step:
            signal.raise_signal(signum)  # lands after the step; handled at its boundary

    return hook


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_checkpoint_before_exiting(tmp_path, signum):
    args = (*SMALL, "train.steps=20", "train.checkpoint_every=8", "train.log_every=4")
    run_config(compose_cfg(*args), tmp_path / "straight")
    before = signal.getsignal(signum)  # SIG_IGN for SIGINT where the tests run under nohup or &
    with pytest.raises(SystemExit) as info:
        run_config(compose_cfg(*args), tmp_path / "stopped", hooks=[_signal_at(11, signum)])
    assert info.value.code == 128 + signum
    assert signal.getsignal(signum) == before  # restored
    result = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert result["status"] == "interrupted" and result["steps"] == 11
    assert read_checkpoint(tmp_path / "stopped" / CHECKPOINT)["step"] == 11  # not 8
    run_config(compose_cfg(*args), tmp_path / "stopped")  # train.resume=auto: nothing lost
    a, b = checkpoint_params(tmp_path / "straight"), checkpoint_params(tmp_path / "stopped")
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
        run_config(compose_cfg(*SMALL, "train.steps=20", "train.checkpoint_every=5"), tmp_path)
    assert calls and read_checkpoint(tmp_path / CHECKPOINT)["step"] == 6  # 5 whole, then 6
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_sigterm_from_outside_checkpoints_a_cli_run(tmp_path):
    args = (*SMALL, "train.steps=100000", "train.checkpoint_every=1000", "train.eval_every=100000",
            f"hydra.run.dir={tmp_path}")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600  # a busy machine: the first 100 steps can take minutes
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
    (straight_results.json) and bit-identical to an uninterrupted run of this code on the kind of
    CPU that made it (FIXTURE_CPU); elsewhere within float rounding, far closer than a resume
    that lost the optimizer's momentum."""
    fixture = Path(__file__).parent / "data" / "run_before_redesign"
    args = (*SMALL, "train.steps=300", "train.checkpoint_every=40", "train.log_every=20",
            "train.eval_every=100", "dataset.val_size=0",  # as then: no validation split
            "model.backend=torch",  # the backend `auto` was then
            "train.threads=2")  # the fixture's: threads change the last bits of sums
    killed = tmp_path / "killed"
    shutil.copytree(fixture, killed)
    assert json.loads((killed / "results.json").read_text())["status"] == "running"
    assert read_checkpoint(killed / CHECKPOINT)["step"] == 120
    broken = tmp_path / "broken"  # a resume that lost SGD's momentum: what the check must catch
    shutil.copytree(fixture, broken)
    state = read_checkpoint(broken / CHECKPOINT)
    for buffers in state["optimizer"]["state"].values():
        buffers["momentum_buffer"].zero_()
    save_atomic(state, Folder(broken), CHECKPOINT)
    for run_dir in (killed, broken, tmp_path / "straight"):
        run_config(compose_cfg(*args), run_dir)
    a, b = checkpoint_params(tmp_path / "straight"), checkpoint_params(killed)
    assert a.keys() == b.keys()
    if host.describe(None)["cpu"] == FIXTURE_CPU:
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:  # another CPU rounds the fixture's first 120 steps differently: 1e-4 apart at 300
        assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-3) for k in a)
    lost = checkpoint_params(broken)
    assert max((a[k] - lost[k]).abs().max().item() for k in a) > 1e-2  # 0.9 measured
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
    run_config(compose_config([*args, "train.steps=4"], conf), tmp_path / "run")
    lstm = conf / "preset" / "lstm_digits.yaml"
    lstm.write_text(lstm.read_text().replace("hidden_size: 32", "hidden_size: 64"))
    run_config(compose_config([*args, "train.steps=6", "model.backend=torch"], conf),
               tmp_path / "run")
    assert RunResult.read(tmp_path / "run").steps == 6
    arnn = conf / "preset" / "arnn_digits.yaml"
    arnn.write_text(arnn.read_text().replace("sigma_w: 1.0", "sigma_w: 2.0"))
    with pytest.raises(CheckpointError, match=r"model.sigma_w: 1.0 there, 2.0 now"):
        run_config(compose_config([*args, "train.steps=8"], conf), tmp_path / "run")



# --- extending a run ---------------------------------------------------------------------------


def test_extending_a_finished_run_is_bit_identical_to_training_it_at_once(tmp_path):
    args = (*SMALL, "train.eval_every=150", "train.log_every=50", "train.checkpoint_every=150")
    run_config(compose_cfg(*args, "train.steps=400"), tmp_path / "straight")
    run_config(compose_cfg(*args, "train.steps=200"), tmp_path / "extended")
    assert RunResult.read(tmp_path / "extended").steps == 200
    run_config(compose_cfg(*args, "train.steps=400"), tmp_path / "extended")
    a, b = checkpoint_params(tmp_path / "straight"), checkpoint_params(tmp_path / "extended")
    assert all(torch.equal(a[k], b[k]) for k in a)
    result = RunResult.read(tmp_path / "extended")
    assert result.status == "completed" and result.steps == 400
    assert [e[0] for e in result.evaluations] == [150, 200, 300, 400]  # one history
    with pytest.raises(ConfigError, match=r"train.steps=300 is invalid: .* already trained 400"):
        run_config(compose_cfg(*args, "train.steps=300"), tmp_path / "extended")
    with pytest.raises(Exception, match="another configuration.*model.eps"):
        run_config(compose_cfg(*args, "train.steps=500", "model.eps=0.5"), tmp_path / "extended")


def test_a_run_stopped_early_continues_bit_identically_when_the_patience_is_lifted(tmp_path):
    """train.patience=1 ends a run at its first evaluation no better than an earlier one (found
    here in the record of the same run trained without patience, the reference); the same
    command again does not train it; without patience it goes on to train.steps and ends
    bit-identical to the run that never stopped."""
    args = (*SMALL, "train.steps=200", "train.eval_every=10", "train.log_every=10",
            "train.checkpoint_every=50")
    run_config(compose_cfg(*args), tmp_path / "straight")
    full = RunResult.read(tmp_path / "straight").evaluations
    stop = next((i for i in range(1, len(full) - 1)
                 if full[i][2] <= max(e[2] for e in full[:i])), None)
    assert stop is not None, f"validation improved at every evaluation: {full}"
    run_config(compose_cfg(*args, "train.patience=1"), tmp_path / "stopped")
    stopped = RunResult.read(tmp_path / "stopped")
    assert stopped.status == "completed" and stopped.steps == full[stop][0]
    assert stopped.evaluations == full[: stop + 1]
    assert "in the 1 evaluations after step" in stopped.stopped_early
    before = (tmp_path / "stopped" / "results.json").read_bytes()
    run_config(compose_cfg(*args, "train.patience=1"), tmp_path / "stopped")
    assert (tmp_path / "stopped" / "results.json").read_bytes() == before
    run_config(compose_cfg(*args), tmp_path / "stopped")
    result = RunResult.read(tmp_path / "stopped")
    assert result.steps == 200 and result.stopped_early is None and result.evaluations == full
    a, b = checkpoint_params(tmp_path / "straight"), checkpoint_params(tmp_path / "stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("patience,planned", [(1, Skip), (2, Skip), (3, Extend), (None, Extend)])
def test_a_run_stopped_early_is_continued_only_by_a_patience_it_has_not_met(patience, planned):
    """Stopped by patience 2 at step 40 (two evaluations after the best, step 20)."""
    evaluations = [[10, 0.5, 0.5], [20, 0.6, 0.7], [30, 0.6, 0.7], [40, 0.7, 0.65]]
    previous = RunResult(Status.COMPLETED, "arnn", "digits", "sgd", steps=40,
                         stopped_early="...", evaluations=evaluations)
    assert isinstance(plan(previous, True, 100, "auto", Path("run"), patience), planned)
    assert isinstance(plan(previous, True, 40, "auto", Path("run"), None), Skip)


def test_a_cosine_run_resumes_bit_identically_and_is_not_extended(tmp_path):
    """The schedule is a function of the step: killed at step 13 and resumed, a cosine run ends
    bit-identical to an uninterrupted one. Its horizon is train.steps, so a larger count is
    another run, refused with the reason, the run left as it was."""
    args = (*SMALL, "train.lr_schedule=cosine", "train.checkpoint_every=5", "train.eval_every=10")
    run_config(compose_cfg(*args, "train.steps=20"), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_config(compose_cfg(*args, "train.steps=20"), tmp_path / "killed",
                   hooks=[interrupt_at(13)])
    run_config(compose_cfg(*args, "train.steps=20"), tmp_path / "killed")
    a, b = (checkpoint_params(tmp_path / d) for d in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    before = (tmp_path / "killed" / "results.json").read_text()
    with pytest.raises(CheckpointError, match=r"train.steps: 20 there, 30 now"):
        run_config(compose_cfg(*args, "train.steps=30"), tmp_path / "killed")
    assert (tmp_path / "killed" / "results.json").read_text() == before


def test_runs_at_a_constant_lr_keep_the_directory_names_they_had_before_schedules():
    """train.lr_schedule and Adagrad's optimizer.initial_accumulator_value were added after run
    directories were named by a digest of the run's settings: at their defaults (constant, 0)
    they are left out of the digest, so that the same command finds the runs made before (names
    computed by the code before the settings existed)."""
    from arnn.identity import run_name

    # arnn's pixel-MNIST preset of 2026-12-04 to 12-06 (its runs' names were computed then)
    preset = ("model=arnn", "dataset=mnist", "optimizer.lr=0.4", "model.sigma_w=4")
    assert run_name(compose_cfg(*preset)) == "arnn_mnist_58a6b9a9ea"
    assert run_name(compose_cfg("model=lstm", "seed=3")) == "lstm_digits_6f2186dfc6"
    accumulator = compose_cfg(*preset, "optimizer.initial_accumulator_value=0.1")
    assert run_name(accumulator) != "arnn_mnist_58a6b9a9ea"
    assert run_name(compose_cfg(*preset, "train.lr_schedule=cosine")) \
        not in ("arnn_mnist_58a6b9a9ea", run_name(compose_cfg(*preset, "train.lr_schedule=cosine",
                                                              "train.steps=10")))


def test_a_diverged_run_is_not_extended(tmp_path):
    run_config(compose_cfg(*SMALL, "optimizer.lr=1e38", "train.steps=20", "train.log_every=10"),
        tmp_path)
    before = (tmp_path / "results.json").read_text()
    run_config(compose_cfg(*SMALL, "optimizer.lr=1e38", "train.steps=40", "train.log_every=10"),
        tmp_path)
    assert (tmp_path / "results.json").read_text() == before



# --- best.pt and the validation record ------------------------------------------------------


def test_best_pt_reproduces_the_test_accuracy_reported_at_the_best_validation_step(tmp_path):
    """`python train.py`'s record: the step of the best validation accuracy, the test accuracy
    there, and checkpoints/best.pt holding that state: evaluating it gives the same number."""
    args = (*SMALL, "train.steps=120", "train.eval_every=20", "optimizer.lr=0.3")
    run_config(compose_cfg(*args), tmp_path)
    result = RunResult.read(tmp_path)
    vals = [e[2] for e in result.evaluations]
    assert result.best_val_accuracy == max(vals) and result.val_accuracy == vals[-1]
    at = vals.index(max(vals))  # the first of equal bests
    assert result.best_val_step == result.evaluations[at][0]
    assert result.test_accuracy_at_best_val == result.evaluations[at][1]
    state = read_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert state["step"] == result.best_val_step
    _, parts = built(*args)
    parts.model.load_state_dict(state["model"])
    assert evaluate(parts.model, parts.task, 500)[0] == result.test_accuracy_at_best_val
    assert evaluate(parts.model, parts.task, 500, "val")[0] == result.best_val_accuracy


def test_a_resumed_run_keeps_its_validation_record(tmp_path):
    args = (*SMALL, "train.steps=60", "train.eval_every=20", "train.checkpoint_every=20")
    run_config(compose_cfg(*args), tmp_path / "straight")

    with pytest.raises(KeyboardInterrupt):
        run_config(compose_cfg(*args), tmp_path / "killed", hooks=[interrupt_at(45)])
    run_config(compose_cfg(*args), tmp_path / "killed")
    a, b = RunResult.read(tmp_path / "straight"), RunResult.read(tmp_path / "killed")
    fields = ("evaluations", "val_accuracy", "best_val_accuracy", "best_val_step",
              "test_accuracy_at_best_val", "test_accuracy")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    best_a = read_checkpoint(tmp_path / "straight" / BEST_CHECKPOINT)["model"]
    best_b = read_checkpoint(tmp_path / "killed" / BEST_CHECKPOINT)["model"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)



def _scripted(monkeypatch, table):
    """evaluate() answers from `table`: step -> (test accuracy, validation accuracy)."""
    from arnn import loop as loop_module

    def evaluate(model, task, batch_size, split="test"):
        step = current["loop"].step
        test, val = table[step]
        return (test if split == "test" else val), 0.5

    current = {}
    real_init = loop_module.Loop.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        current["loop"] = self

    monkeypatch.setattr(loop_module, "evaluate", evaluate)
    monkeypatch.setattr(loop_module.Loop, "__init__", init)


# The test accuracy peaks at step 10, before the best validation accuracy (step 20); step 40
# ties the best validation accuracy (the earlier step stays the best); later evaluations are
# worse, so a record that forgot the best or took the last would say so.
SCRIPT = {10: (0.90, 0.50), 20: (0.60, 0.80), 30: (0.70, 0.60), 40: (0.65, 0.80),
          50: (0.40, 0.30), 60: (0.30, 0.20)}
SCRIPT_ARGS = (*SMALL, "train.steps=60", "train.eval_every=10", "train.checkpoint_every=20")


def test_the_record_reports_the_test_accuracy_at_the_first_best_validation_step(
        tmp_path, monkeypatch):
    _scripted(monkeypatch, SCRIPT)
    run_config(compose_cfg(*SCRIPT_ARGS), tmp_path)
    result = RunResult.read(tmp_path)
    assert (result.best_val_accuracy, result.best_val_step) == (0.80, 20)
    assert result.test_accuracy_at_best_val == 0.60  # not the best test (0.90 at step 10)
    assert (result.best_test_accuracy, result.test_accuracy, result.val_accuracy) == (
        0.90, 0.30, 0.20)
    best = read_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert (best["step"], best["val_accuracy"], best["test_accuracy"]) == (20, 0.80, 0.60)


def test_a_resume_keeps_a_best_from_before_the_kill(tmp_path, monkeypatch):
    """Killed at step 45 (checkpoint at 40): the best (step 20) is older than the kill and
    every later evaluation is worse; the resumed run reports it and best.pt holds its weights,
    as an uninterrupted run does."""
    _scripted(monkeypatch, SCRIPT)
    run_config(compose_cfg(*SCRIPT_ARGS), tmp_path / "straight")

    with pytest.raises(KeyboardInterrupt):
        run_config(compose_cfg(*SCRIPT_ARGS), tmp_path / "killed", hooks=[interrupt_at(45)])
    (tmp_path / "killed" / BEST_CHECKPOINT).unlink()  # even without it: last.pt holds the best
    run_config(compose_cfg(*SCRIPT_ARGS), tmp_path / "killed")
    a, b = (RunResult.read(tmp_path / d) for d in ("straight", "killed"))
    assert (b.best_val_step, b.test_accuracy_at_best_val) == (20, 0.60)
    assert a.evaluations == b.evaluations
    pa, pb = (checkpoint_params(tmp_path / d, "best.pt") for d in ("straight", "killed"))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    kept = read_checkpoint(tmp_path / "killed" / CHECKPOINT)["best_model"]  # for a next resume
    assert kept is not None and all(torch.equal(pa[k], kept[k]) for k in pa)


def test_best_pt_of_a_discarded_timeline_is_replaced_on_resume(tmp_path):
    """The issue's sequence: evaluate every 5 steps, checkpoint every 10, kill at 17, resume
    with train.eval_every=20: best.pt and results.json agree on the best validation step."""
    args = (*SMALL, "train.steps=40", "train.checkpoint_every=10", "optimizer.lr=0.3")

    with pytest.raises(KeyboardInterrupt):
        run_config(compose_cfg(*args, "train.eval_every=5"), tmp_path, hooks=[interrupt_at(17)])
    run_config(compose_cfg(*args, "train.eval_every=20"), tmp_path)
    result = RunResult.read(tmp_path)
    best = read_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert best["step"] == result.best_val_step and best["step"] <= 40
    assert (best["val_accuracy"], best["test_accuracy"]) == (
        result.best_val_accuracy, result.test_accuracy_at_best_val)
    _, parts = built(*args)
    parts.model.load_state_dict(best["model"])
    assert evaluate(parts.model, parts.task, 500, "val")[0] == result.best_val_accuracy


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam", "adamw", "rmsprop"])
def test_each_optimizer_resumes_bit_identically(tmp_path, optimizer):
    """Killed at step 13 (checkpoints every 5) and resumed: the same parameters as an
    uninterrupted run, the optimizer's state (moments, sums, momentum) restored exactly."""
    extra = ["optimizer.lr=0.001"] if optimizer.startswith("adam") else []
    if optimizer == "rmsprop":
        extra = ["optimizer.lr=0.001", "optimizer.momentum=0.5", "optimizer.centered=true"]
    args = (*SMALL, f"optimizer={optimizer}", *extra, "train.steps=20",
            "train.checkpoint_every=5", "train.eval_every=10")
    run_config(compose_cfg(*args), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_config(compose_cfg(*args), tmp_path / "killed", hooks=[interrupt_at(13)])
    run_config(compose_cfg(*args), tmp_path / "killed")
    a, b = (checkpoint_params(tmp_path / d) for d in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = read_checkpoint(tmp_path / "killed" / CHECKPOINT)["optimizer"]["state"]
    names = set().union(*(s.keys() for s in state.values()))
    assert names >= {"sgd": {"momentum_buffer"}, "adagrad": {"sum"}, "adam": {"exp_avg_sq"},
                     "adamw": {"exp_avg_sq"}, "rmsprop": {"square_avg", "grad_avg",
                                                          "momentum_buffer"}}[optimizer]


def test_a_resume_on_other_terms_says_so_and_records_both(tmp_path, caplog):
    """Another thread count changes the last bits of sums: the resume warns that the result
    will not be bit-identical, and the record keeps what computed each part."""
    import logging

    run_config(compose_cfg(*SMALL, "train.steps=4", "train.threads=1"), tmp_path)
    with caplog.at_level(logging.WARNING, logger="arnn"):
        run_config(compose_cfg(*SMALL, "train.steps=8", "train.threads=2"), tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "other terms" in r.getMessage()]
    assert len(warnings) == 1 and "threads 1 there, 2 now" in warnings[0]
    result = RunResult.read(tmp_path)
    assert [h["threads"] for h in result.hosts] == [1, 2] and result.host["threads"] == 2
    # another kind of CPU or BLAS rounds differently too (see the previous-layout test)
    here = host.describe("cpu")
    elsewhere = {**here, "cpu": "Another CPU (AVX2)", "blas": "openblas"}
    assert host.changed_terms(elsewhere, here) == [
        f"blas 'openblas' there, {here['blas']!r} now",
        f"cpu 'Another CPU (AVX2)' there, {here['cpu']!r} now"]
    assert host.changed_terms(here, here) == []
    # a checkpoint written before a term was recorded compares only the terms it has
    assert host.changed_terms({"threads": 1, "backend": "cpu"}, here) == [
        f"threads 1 there, {here['threads']} now"] * (here["threads"] != 1)


@pytest.mark.slow
def test_ctrl_c_then_the_same_command_finishes_bit_identical_to_an_uninterrupted_run(tmp_path):
    """README's promise, as a user meets it: Ctrl-C a run, type the same command again (no
    directory named): it continues from the checkpoint in the run's own directory and ends
    with the weights an uninterrupted run ends with; a third time, it says where the result
    is instead of training again."""
    args = ["model=lstm", "train.steps=300", "train.log_every=10", "train.eval_every=100",
            "train.checkpoint_every=1000"]
    (tmp_path / "straight").mkdir()
    (tmp_path / "stopped").mkdir()
    assert run_cli(*args, cwd=tmp_path / "straight").returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args],
                            cwd=tmp_path / "stopped", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if "step 50/300" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGINT, rest
    assert "the same command continues the run" in rest
    again = run_cli(*args, cwd=tmp_path / "stopped")
    assert again.returncode == 0 and "resumed from" in again.stdout + again.stderr
    (straight,) = (tmp_path / "straight" / "outputs" / "runs").iterdir()
    (stopped,) = (tmp_path / "stopped" / "outputs" / "runs").iterdir()
    assert straight.name == stopped.name  # named by the run's identity, not the clock
    a, b = checkpoint_params(straight), checkpoint_params(stopped)
    assert all(torch.equal(a[k], b[k]) for k in a)
    third = run_cli(*args, cwd=tmp_path / "stopped")
    output = third.stdout + third.stderr
    assert third.returncode == 0 and "already completed at step 300" in output
    assert f"results in outputs/runs/{stopped.name}" in output


def test_subnormal_floats_are_flushed_and_recorded(tmp_path, caplog):
    """A run that blew up fills its states with subnormal floats, which x86 CPUs compute 40-50
    times slower (docs/running.md): the runner computes them as zero (train.flush_denormal,
    default true) and records it in `host`; false keeps them (IEEE). Checked on the arithmetic
    itself: 1e-30 * 1e-10 is 0 when flushed, 1e-40 when kept."""
    import logging

    product = lambda: (torch.tensor([1e-30]) * 1e-10).item()  # noqa: E731
    run_config(compose_cfg(*SMALL, "train.steps=2", "train.threads=1"), tmp_path / "a")
    assert RunResult.read(tmp_path / "a").host["denormals"] == "flushed" and product() == 0.0
    kept = compose_cfg(*SMALL, "train.steps=2", "train.threads=1", "train.flush_denormal=false")
    run_config(kept, tmp_path / "b")
    assert RunResult.read(tmp_path / "b").host["denormals"] == "kept"
    assert product() == pytest.approx(1e-40, rel=1e-4)
    with caplog.at_level(logging.WARNING, logger="arnn"):  # resumed, flushing: says so
        run_config(compose_cfg(*SMALL, "train.steps=4", "train.threads=1"), tmp_path / "b")
    assert any("denormals 'kept' there, 'flushed' now" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_subnormal_floats_are_flushed_on_threads_started_after_the_flag(tmp_path):
    """The flag is per thread, inherited by threads started later: a run process sets it before
    torch starts its threads, so all of them flush; threads started earlier keep theirs, and
    the record and a warning say so. Slow: two runs in subprocesses, where torch's threads
    start fresh."""
    args = (*SMALL, "train.steps=2", "train.threads=2")
    assert run_cli(*args, f"hydra.run.dir={tmp_path / 'c'}").returncode == 0
    assert RunResult.read(tmp_path / "c").host["denormals"] == "flushed"
    early = "import torch\ntorch.set_num_threads(2)\ntorch.ones(1 << 20) * 2"
    proc = run_cli_patched(early, *args, f"hydra.run.dir={tmp_path / 'd'}")
    assert proc.returncode == 0, proc.stderr
    assert RunResult.read(tmp_path / "d").host["denormals"] == "partly"
    assert "train.flush_denormal=true, but subnormal floats are partly" in proc.stdout
