"""The runner: TensorBoard, what a run reports, divergence, failures, the stability warning."""

import json
import math

import numpy as np
import pytest
import torch

from arnn.checkpoint import BEST_CHECKPOINT, CHECKPOINT
from arnn.data import pixel_permutation
from arnn.results import RunResult, Status, stalled
from arnn.window import StepWindow
from tests.fixtures import (
    SMALL,
    built,
    compose_cfg,
    events,
    make_loop,
    read_checkpoint,
    run_cli,
    run_config,
)


def test_tensorboard_scalars_and_hparams_in_the_run_directory(tmp_path):
    cfg = compose_cfg(*SMALL, "train.steps=20", "train.log_every=5", "train.eval_every=10")
    run_config(cfg, tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*")), "event file in the run dir itself"
    acc = events(tmp_path)
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
        run_config(compose_cfg(*SMALL, "train.steps=10"), tmp_path, hooks=[explode])
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "failed" and "simulated fault at step 3" in result["error"]
    assert result["steps"] == 3



def test_test_accuracy_is_the_last_evaluation_over_the_whole_test_split(tmp_path):
    """The digits' test split (450 images) in batches of 100: the reported accuracy is the one
    of the final weights on all 450 test images (not the training split, not one batch)."""
    args = (*SMALL, "train.steps=30", "train.eval_every=10", "train.eval_batch_size=100")
    run_config(compose_cfg(*args), tmp_path)
    result = RunResult.read(tmp_path)
    _, parts = built(*args)
    parts.model.load_state_dict(read_checkpoint(tmp_path / CHECKPOINT)["model"])
    task = parts.task
    assert task.num_test == 450 and result.num_test == 450
    with torch.no_grad():
        images, labels, _ = task.splits["test"]
        predicted = parts.model(task.sequences(images, task.eval_noise)).argmax(dim=-1)
    by_hand = (predicted == labels).double().mean().item()
    assert result.test_accuracy == pytest.approx(by_hand, abs=1e-12)
    assert result.test_accuracy == result.evaluations[-1][1]
    assert result.best_test_accuracy == max(e[1] for e in result.evaluations)


def test_patience_ends_a_run_whose_validation_accuracy_stops_improving(tmp_path):
    """At lr 1e-30 no weight moves: the first evaluation's validation accuracy (step 5) is never
    beaten (a tie is no improvement), so patience 2 ends the run at the second evaluation after
    it, checkpointed there, with its record and best.pt of step 5."""
    run_config(compose_cfg(*SMALL, "optimizer.lr=1e-30", "train.steps=100", "train.eval_every=5",
                           "train.log_every=5", "train.checkpoint_every=50",
                           "train.patience=2"), tmp_path)
    result = RunResult.read(tmp_path)
    assert result.status == Status.COMPLETED and result.steps == 15
    assert [e[0] for e in result.evaluations] == [5, 10, 15] and result.best_val_step == 5
    assert len({e[2] for e in result.evaluations}) == 1
    assert result.stopped_early == ("no better validation accuracy in the 2 evaluations after "
                                    "step 5 (train.patience=2)")
    assert read_checkpoint(tmp_path / CHECKPOINT)["step"] == 15
    assert (tmp_path / BEST_CHECKPOINT).is_file()


def test_patience_counts_evaluations_after_the_first_of_equal_best_accuracies():
    """By hand: [step, test, validation] lists; a tie does not move the best."""
    assert stalled([], 1) is None and stalled([[10, 0.5], [20, 0.6]], 1) is None  # no validation
    assert stalled([[10, 0.5, 0.7]], 1) is None
    rising_then_flat = [[10, 0.5, 0.7], [20, 0.6, 0.8], [30, 0.6, 0.8], [40, 0.9, 0.75]]
    assert stalled(rising_then_flat, None) is None and stalled(rising_then_flat, 3) is None
    assert stalled(rising_then_flat, 2) == ("no better validation accuracy in the 2 evaluations "
                                            "after step 20 (train.patience=2)")
    assert stalled(rising_then_flat, 1) == ("no better validation accuracy in the 2 evaluations "
                                            "after step 20 (train.patience=1)")
    assert stalled([[10, 0.5, 0.7], [20, 0.6, 0.6], [30, 0.6, 0.71]], 1) is None


@pytest.mark.parametrize("max_loss,status", [(1.5, Status.DIVERGED), (5.0, Status.COMPLETED)])
def test_max_loss_is_compared_with_the_window_mean(tmp_path, max_loss, status):
    """The first window's mean cross-entropy is near ln 10 = 2.30: above 1.5, under 5."""
    run_config(compose_cfg(*SMALL, "train.steps=10", "train.log_every=5", "optimizer.lr=0.01",
                    f"train.max_loss={max_loss}"), tmp_path)
    result = RunResult.read(tmp_path)
    assert result.status == status
    if status is Status.DIVERGED:
        assert result.steps == 5 and f"> train.max_loss={max_loss:g}" in result.divergence


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clip_bounds_the_first_step(clip):
    """SGD's first step moves the parameters by lr * g (the momentum buffer starts at g): with
    train.grad_clip, by lr * clip exactly; without, by lr * ||g||, far more."""
    clip_arg = "null" if clip is None else clip
    loop = make_loop(*SMALL, "optimizer=sgd", "optimizer.lr=0.1", f"train.grad_clip={clip_arg}")
    before = torch.cat([p.detach().flatten().clone() for p in loop.model.parameters()])
    loop.train_step(*loop.task.train_batch(loop.parts.sampler.next()))
    after = torch.cat([p.detach().flatten() for p in loop.model.parameters()])
    moved = (after - before).norm().item()
    if clip is None:
        assert moved > 100 * 0.1 * 1e-3
    else:
        assert moved == pytest.approx(0.1 * clip, rel=1e-3)


def _torch_cosine_lrs(lr, steps):
    """The learning rate of each step under torch's CosineAnnealingLR (T_max = steps, to 0)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return out


def test_a_cosine_schedule_takes_torchs_cosine_annealing_steps():
    """train.lr_schedule=cosine: every step's lr is the one torch's CosineAnnealingLR (an
    independent implementation) gives it, and the parameters end where a constant-lr loop whose
    lr is set by hand to those values before each step ends."""
    steps, lr = 12, 0.3
    args = (*SMALL, "optimizer=sgd", f"optimizer.lr={lr}", f"train.steps={steps}")
    expected = _torch_cosine_lrs(lr, steps)
    cosine, by_hand = make_loop(*args, "train.lr_schedule=cosine"), make_loop(*args)
    taken, optimizer_step = [], cosine.optimizer.step

    def recording_step():  # the lr the optimizer steps with
        taken.append(cosine.optimizer.param_groups[0]["lr"])
        optimizer_step()

    cosine.optimizer.step = recording_step
    for step in range(steps):
        cosine.train_step(*cosine.task.train_batch(cosine.parts.sampler.next()))
        by_hand.lr = expected[step]  # the lr its (constant) steps take
        by_hand.train_step(*by_hand.task.train_batch(by_hand.parts.sampler.next()))
    assert taken == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert taken[0] == lr and taken[steps // 2] == pytest.approx(lr / 2) and taken[-1] < lr / 50
    for a, b in zip(cosine.model.parameters(), by_hand.model.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert cosine.optimizer.param_groups[0]["lr"] == lr  # between steps (checkpoints): lr


@pytest.mark.slow
def test_a_pmnist_run_records_its_permutation(tmp_path, mnist_dir):
    run_config(compose_cfg("dataset=pmnist", f"data_dir={mnist_dir}", "model.hidden_size=8",
                    "dataset.train_limit=64", "dataset.test_limit=64", "train.steps=1",
                    "device=cpu"), tmp_path)
    saved = json.loads((tmp_path / "permutation.json").read_text())
    assert sorted(saved) == list(range(784)) and saved != list(range(784))
    assert saved == pixel_permutation(784, 0).tolist()


def test_a_run_that_diverges_before_any_evaluation_scores_zero_for_a_sweeper(tmp_path):
    args = (*SMALL, "optimizer.lr=1e12", "train.steps=200", "train.log_every=50")
    assert run_config(compose_cfg(*args), tmp_path / "a") == 0.0
    assert RunResult.read(tmp_path / "a").status == "diverged"
    assert run_config(compose_cfg(*args), tmp_path / "a") == 0.0  # skipped: the same answer
    assert run_config(compose_cfg(*args, "dataset.val_size=0"), tmp_path / "b") is None



def test_max_loss_reads_the_window_mean_not_its_last_loss():
    """Losses 5 then 1: the mean (3) is above train.max_loss=2.5, the last one is not."""
    window = StepWindow(10, torch.device("cpu"), 0)
    for step, loss in ((1, 5.0), (2, 1.0)):
        window.record(step, torch.tensor(loss), torch.tensor(1.0), torch.tensor(0.0), 4)
    last_finite, diverged = window.divergence(2, 2.5)
    assert last_finite == 1.0 and diverged == (2, "mean training loss 3 over steps 1-2 > "
                                               "train.max_loss=2.5")
    assert window.divergence(2, 3.5)[1] is None


def test_the_loop_does_not_read_the_config_at_every_step(tmp_path, monkeypatch):
    """train.steps and the intervals are interpolations that OmegaConf parses on every access
    (a grammar parse each, 1-2 ms): read per step, they cost more than a digits step itself.
    Forty more steps may not add forty more reads."""
    from omegaconf import DictConfig

    reads = {"n": 0}
    original = DictConfig.__getattr__

    def counting(self, key):
        reads["n"] += 1
        return original(self, key)

    monkeypatch.setattr(DictConfig, "__getattr__", counting)
    counts = []
    for steps in (10, 50):
        cfg = compose_cfg(*SMALL, f"train.steps={steps}", "train.log_every=1000",
                          "train.eval_every=1000", "train.checkpoint_every=1000")
        reads["n"] = 0
        run_config(cfg, tmp_path / str(steps))
        counts.append(reads["n"])
    assert counts[1] - counts[0] < 40, counts
