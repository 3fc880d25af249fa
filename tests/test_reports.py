"""What a run reports and what a table says, checked from the user's side against numbers
computed here by other means."""

import csv
import json

import pytest
import torch
import yaml

from arnn.build import build
from arnn.checkpoint import BEST_CHECKPOINT, CHECKPOINT
from arnn.collect import main as collect_main
from arnn.data import pixel_permutation
from arnn.identity import fingerprint
from arnn.loop import Loop, evaluate
from arnn.results import RunResult, Status
from arnn.run_dir import run
from hydra_plugins.arnn_halving_sweeper._impl import HalvingSweeperImpl
from tests.fixtures import SMALL, compose_cfg, read_checkpoint


def test_test_accuracy_is_the_last_evaluation_over_the_whole_test_split(tmp_path):
    """The digits' test split (450 images) in batches of 100: the reported accuracy is the one
    of the final weights on all 450 test images (not the training split, not one batch)."""
    args = (*SMALL, "train.steps=30", "train.eval_every=10", "train.eval_batch_size=100")
    run(compose_cfg(*args), tmp_path)
    result = RunResult.read(tmp_path)
    parts = build(compose_cfg(*args))
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


@pytest.mark.parametrize("max_loss,status", [(1.5, Status.DIVERGED), (5.0, Status.COMPLETED)])
def test_max_loss_is_compared_with_the_window_mean(tmp_path, max_loss, status):
    """The first window's mean cross-entropy is near ln 10 = 2.30: above 1.5, under 5."""
    run(compose_cfg(*SMALL, "train.steps=10", "train.log_every=5", "optimizer.lr=0.01",
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
    cfg = compose_cfg(*SMALL, "optimizer=sgd", "optimizer.lr=0.1", f"train.grad_clip={clip_arg}")
    loop = Loop(build(cfg), cfg, fingerprint(cfg))
    before = torch.cat([p.detach().flatten().clone() for p in loop.model.parameters()])
    loop.train_step(*loop.task.train_batch(loop.parts.sampler.next()))
    after = torch.cat([p.detach().flatten() for p in loop.model.parameters()])
    moved = (after - before).norm().item()
    if clip is None:
        assert moved > 100 * 0.1 * 1e-3
    else:
        assert moved == pytest.approx(0.1 * clip, rel=1e-3)


@pytest.mark.slow
def test_a_pmnist_run_records_its_permutation(tmp_path, mnist_dir):
    run(compose_cfg("dataset=pmnist", f"data_dir={mnist_dir}", "model.hidden_size=8",
                    "dataset.train_limit=64", "dataset.test_limit=64", "train.steps=1",
                    "device=cpu"), tmp_path)
    saved = json.loads((tmp_path / "permutation.json").read_text())
    assert sorted(saved) == list(range(784)) and saved != list(range(784))
    assert saved == pixel_permutation(784, 0).tolist()


class _FakeLauncher:
    """Writes each launched job's results.json: validation accuracy `final`, best `best`, and
    the test accuracies the other way round (a sweeper ranking by test would choose others)."""

    def __init__(self, sweep, values):
        self.sweep, self.values = sweep, values

    def launch(self, batch, initial_job_idx):
        for overrides in batch:
            job = int(next(o for o in overrides if o.startswith("hydra.sweep.subdir=")
                           ).split("=")[1])
            steps = int(next(o for o in overrides if o.startswith("train.steps=")).split("=")[1])
            final, best = self.values[job]
            RunResult(Status.COMPLETED, "arnn", "digits", "sgd", val_accuracy=final,
                      best_val_accuracy=best, test_accuracy=1 - final,
                      best_test_accuracy=1 - best, steps=steps).write(self.sweep / str(job))
        return []


@pytest.mark.parametrize("metric,promoted", [("val_accuracy", [1, 3]),
                                             ("best_val_accuracy", [0, 2]),
                                             ("test_accuracy", [2, 0])])
def test_halving_promotes_by_the_metric_it_is_given(tmp_path, metric, promoted):
    values = {0: (0.5, 0.95), 1: (0.8, 0.8), 2: (0.4, 0.9), 3: (0.7, 0.7)}
    sweeper = HalvingSweeperImpl(None, min_steps=10, eta=2, metric=metric)
    sweeper.launcher = _FakeLauncher(tmp_path, values)
    record = {"budgets": [10, 20], "configs": [[f"model.eps=0.{j + 1}"] for j in values],
              "rungs": []}
    assert sweeper._run_rung(tmp_path, record, 0, list(values), []) == promoted
    outcomes = record["rungs"][0]["outcomes"]
    column = {"val_accuracy": lambda v: v[0], "best_val_accuracy": lambda v: v[1],
              "test_accuracy": lambda v: 1 - v[0]}[metric]
    assert {int(j): o["metric"] for j, o in outcomes.items()} == pytest.approx(
        {j: column(v) for j, v in values.items()})


def _job(sweep, num, model, dataset, seed, accuracy, seq_len=None):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model": {"name": model}}))
    config = {"model": {"name": model, "hidden_size": 128},
              "dataset": {"name": dataset, "seq_len": seq_len},
              "optimizer": {"name": "sgd", "lr": 0.1}, "seed": seed}
    RunResult(Status.COMPLETED, model, dataset, "sgd", test_accuracy=accuracy,
              best_test_accuracy=accuracy, val_accuracy=accuracy, best_val_accuracy=accuracy,
              test_accuracy_at_best_val=accuracy, steps=100, params=10_000,
              config=config).write(job)


def test_collector_reports_each_jobs_settings_and_ours_beside_the_paper(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, "arnn", "mnist", 7, 0.512)
    _job(sweep, 1, "lstm", "pmnist", 3, 0.123)
    collect_main([str(sweep)])
    with open(sweep / "results.csv") as f:
        rows = {row["job"]: row for row in csv.DictReader(f)}
    assert {rows[str(sweep / "0")]["seed"], rows[str(sweep / "1")]["seed"]} == {"7", "3"}
    assert rows[str(sweep / "1")]["hidden_size"] == "128"
    table = (sweep / "results.md").read_text().split("## Table 1")[1].split("##")[0]
    head, _, *body = [line for line in table.splitlines() if line.startswith("|")]
    cells = {row.split("|")[1].strip(): [c.strip() for c in row.split("|")[2:-1]] for row in body}
    columns = [c.strip() for c in head.split("|")[2:-1]]
    assert cells["arnn"][columns.index("mnist ours")] == "51.2% (1)"
    assert cells["arnn"][columns.index("mnist paper")] == "98.0%"
    assert cells["lstm"][columns.index("pmnist ours")] == "12.3% (1)"
    assert cells["lstm"][columns.index("pmnist paper")] == "92.6%"


def test_collector_reports_accuracy_against_the_sequence_length(tmp_path):
    """Jobs that differ only in T and seed: one line per model, mean ± std over the seeds."""
    sweep, num = tmp_path / "sweep", 0
    accuracy = {("lstm", 25): [0.9, 0.8, 0.7], ("lstm", 300): [0.1, 0.12, 0.08],
                ("gated_arnn", 25): [0.9, 0.9, 0.9], ("gated_arnn", 300): [0.5, 0.6]}
    for (model, seq_len), values in accuracy.items():
        for seed, value in enumerate(values):
            _job(sweep, num, model, "noise_digits", seed, value, seq_len)
            num += 1
    collect_main([str(sweep)])
    md = (sweep / "results.md").read_text()
    table = md.split("against the sequence length T")[1]
    lstm = next(line for line in table.splitlines() if "| lstm (" in line)
    gated = next(line for line in table.splitlines() if "| gated_arnn (" in line)
    assert "T=25 | T=300" in table
    assert lstm.endswith("| 80.0 ± 10.0% (3) | 10.0 ± 2.0% (3) |")
    assert gated.endswith("| 90.0 ± 0.0% (3) | 55.0 ± 7.1% (2) |")
    assert (sweep / "results_length.png").read_bytes()[:4] == b"\x89PNG"


def test_best_pt_reproduces_the_test_accuracy_reported_at_the_best_validation_step(tmp_path):
    """`python train.py`'s record: the step of the best validation accuracy, the test accuracy
    there, and checkpoints/best.pt holding that state: evaluating it gives the same number."""
    args = (*SMALL, "train.steps=120", "train.eval_every=20", "optimizer.lr=0.3")
    run(compose_cfg(*args), tmp_path)
    result = RunResult.read(tmp_path)
    vals = [e[2] for e in result.evaluations]
    assert result.best_val_accuracy == max(vals) and result.val_accuracy == vals[-1]
    at = vals.index(max(vals))  # the first of equal bests
    assert result.best_val_step == result.evaluations[at][0]
    assert result.test_accuracy_at_best_val == result.evaluations[at][1]
    state = read_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert state["step"] == result.best_val_step
    parts = build(compose_cfg(*args))
    parts.model.load_state_dict(state["model"])
    assert evaluate(parts.model, parts.task, 500)[0] == result.test_accuracy_at_best_val
    assert evaluate(parts.model, parts.task, 500, "val")[0] == result.best_val_accuracy


def test_a_resumed_run_keeps_its_validation_record(tmp_path):
    args = (*SMALL, "train.steps=60", "train.eval_every=20", "train.checkpoint_every=20")
    run(compose_cfg(*args), tmp_path / "straight")

    def stop_at_45(loop):
        if loop.step == 45:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(compose_cfg(*args), tmp_path / "killed", hooks=[stop_at_45])
    run(compose_cfg(*args), tmp_path / "killed")
    a, b = RunResult.read(tmp_path / "straight"), RunResult.read(tmp_path / "killed")
    fields = ("evaluations", "val_accuracy", "best_val_accuracy", "best_val_step",
              "test_accuracy_at_best_val", "test_accuracy")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    best_a = read_checkpoint(tmp_path / "straight" / BEST_CHECKPOINT)["model"]
    best_b = read_checkpoint(tmp_path / "killed" / BEST_CHECKPOINT)["model"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_a_run_that_diverges_before_any_evaluation_scores_zero_for_a_sweeper(tmp_path):
    args = (*SMALL, "optimizer.lr=1e12", "train.steps=200", "train.log_every=50")
    assert run(compose_cfg(*args), tmp_path / "a") == 0.0
    assert RunResult.read(tmp_path / "a").status == "diverged"
    assert run(compose_cfg(*args), tmp_path / "a") == 0.0  # skipped: the same answer
    assert run(compose_cfg(*args, "dataset.val_size=0"), tmp_path / "b") is None
