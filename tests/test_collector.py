"""The collector (arnn-collect): reading jobs, choosing each task's configuration by the one rule
of a grid point's score, the tables and figures, checked on hand-made sweeps whose numbers differ
wherever a wrong reading would pick another one."""

import csv
import json

import pytest

from arnn.collect import main as collect_main
from arnn.points import score
from arnn.report.choose import best_per_task
from arnn.report.jobs import collect
from arnn.report.tables import csv_columns
from arnn.sweeps import outcome
from hydra_plugins.arnn_halving_sweeper._impl import promote
from tests.fixtures import fake_job


def _best_section(sweep) -> str:
    return (sweep / "results.md").read_text().split("## Best configuration per task")[1]


def _table(md: str, title: str) -> dict[str, dict[str, str]]:
    """A markdown table of results.md as {first cell: {column: cell}}."""
    rows = [r for r in md.split(title)[1].split("\n## ")[0].splitlines() if r.startswith("|")]
    head = [c.strip() for c in rows[0].split("|")[1:-1]]
    return {cells[0]: dict(zip(head, cells, strict=True))
            for cells in ([c.strip() for c in r.split("|")[1:-1]] for r in rows[2:])}


def test_collector_ranks_by_the_metric_asked(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, lr=0.1, evaluations=[[50, 0.95], [100, 0.60]])
    fake_job(sweep, 1, lr=0.2, evaluations=[[50, 0.91], [100, 0.90]])
    fake_job(sweep, 2, lr=0.3, evaluations=[[50, 0.40], [100, 0.30]])
    fake_job(sweep, 3, lr=0.4, status="failed", evaluations=[[50, 0.99], [100, 0.99]])
    collect_main([str(sweep), "--select", "test_accuracy"])
    assert f"| {sweep / '1'} |" in _best_section(sweep) and "lr=0.2" in _best_section(sweep)
    assert "not test results" in (sweep / "results.md").read_text()
    collect_main([str(sweep), "--select", "best_test_accuracy"])
    assert f"| {sweep / '0'} |" in _best_section(sweep) and "lr=0.1" in _best_section(sweep)


def test_selection_by_validation_never_looks_at_test(tmp_path):
    """lr=0.1 has the best test accuracy, lr=0.2 the best validation accuracy: the collector
    chooses lr=0.2 and reports its test accuracy; so does the halving sweeper's promotion."""
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, lr=0.1, evaluations=[[50, 0.94, 0.72], [100, 0.95, 0.70]])
    fake_job(sweep, 1, lr=0.2, evaluations=[[50, 0.81, 0.86], [100, 0.80, 0.85]])
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
        fake_job(sweep, num, lr=lr, seed=seed, evaluations=[[100, val - 0.1, val]])
    collect_main([str(sweep), "--select", "val_accuracy"])
    best = _best_section(sweep)
    assert "lr=0.2" in best and "| 85.0% (1) | 75.0% (1) |" in best
    collect_main([str(sweep), "--select", "val_accuracy", "--out", str(tmp_path / "o")])
    rows = (tmp_path / "o" / "results.md").read_text()
    assert "Cells: mean ± standard deviation over seeds" in rows
    configs = [[f"optimizer.lr={lr}", f"seed={seed}"] for lr, _, seed in vals]
    outcomes = {j: outcome(sweep / str(j), "val_accuracy") for j in range(len(vals))}
    assert promote(outcomes, 3, configs) == [3]  # 3 points: the best 1
    assert promote(outcomes, 2, configs) == [3]  # floor(3 / 2) = 1


def test_the_sweeper_and_the_collector_choose_by_one_rule(tmp_path):
    """lr=0.1 has a seed at 0.90 and one that diverged after reaching 0.95 (its record holds
    the best validation accuracy it saw), lr=0.2 one at 0.92 and one that failed, lr=0.3 two
    at 0.60. Before, the collector averaged completed and diverged seeds (lr=0.1: 0.925) and
    ignored failed ones (lr=0.2: 0.92), the sweeper counted both as 0: they chose different
    points. Now a seed that did not complete counts 0 for both (lr=0.1: 0.45, lr=0.2: 0.46,
    lr=0.3: 0.60): both choose lr=0.3."""
    sweep = tmp_path / "sweep"
    jobs = [(0.1, "completed", 0.90), (0.1, "diverged", 0.95), (0.2, "completed", 0.92),
            (0.2, "failed", None), (0.3, "completed", 0.60), (0.3, "completed", 0.60)]
    for num, (lr, status, val) in enumerate(jobs):
        evaluations = [[100, 0.5, val]] if val is not None else []
        fake_job(sweep, num, lr=lr, seed=num % 2, status=status, evaluations=evaluations)
    configs = [[f"optimizer.lr={lr}", f"seed={num % 2}"] for num, (lr, _, _) in enumerate(jobs)]
    outcomes = {j: outcome(sweep / str(j), "best_val_accuracy") for j in range(len(jobs))}
    assert promote(outcomes, 3, configs) == [4, 5]
    (point,) = best_per_task(collect([sweep]).jobs, "best_val_accuracy").values()
    assert point.settings["lr"] == 0.3 and sorted(j.path.name for j in point.jobs) == ["4", "5"]
    collect_main([str(sweep)])
    md = (sweep / "results.md").read_text()
    assert "lr=0.3" in _best_section(sweep) and "| 60.0 ± 0.0% (2) |" in _best_section(sweep)
    assert score([("completed", 0.90), ("diverged", 0.95)]).note() == (
        "; 1 not completed (counted 0)")
    assert "a seed that did not complete counts 0" in md


def test_a_point_with_a_failed_seed_says_so_in_its_cell(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, seed=0, evaluations=[[100, 0.8, 0.9]])
    fake_job(sweep, 1, seed=1, status="failed")
    collect_main([str(sweep)])
    assert "| 45.0 ± 63.6% (2; 1 not completed (counted 0)) |" in _best_section(sweep)


def test_choosing_by_validation_without_a_validation_split_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, evaluations=[[100, 0.95]])
    with pytest.raises(SystemExit) as info:
        collect_main([str(sweep)])
    assert info.value.code == 2
    assert "no job has a validation split" in capsys.readouterr().err
    assert not (sweep / "results.md").exists()


def test_a_sweep_whose_jobs_all_diverged_before_evaluating_is_no_refusal(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, status="diverged", num_val=135)
    collect_main([str(sweep)])
    assert "| 0 | 1 |" in (sweep / "results.md").read_text()  # 0 completed, 1 diverged


def test_collector_ranks_the_deepest_rung_first(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, lr=0.1, steps=10, evaluations=[[10, 0.95]])  # high, but stopped early
    fake_job(sweep, 1, lr=0.2, steps=20, evaluations=[[20, 0.80]])
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
    rows = list(csv.DictReader(open(sweep / "results.csv")))
    assert rows[0]["rung"] == "1" and rows[1]["rung"] == "2"  # numbered from 1, as the log


def test_the_paper_tables_report_the_test_accuracy_of_the_point_chosen(tmp_path):
    """Validation and test accuracies differ everywhere: Table 1's cells are the test accuracy
    at the best validation step of the point chosen by validation, beside the paper's."""
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, model="arnn", dataset="mnist", seed=7, steps=200,
             evaluations=[[100, 0.512, 0.70], [200, 0.40, 0.60]],
             settings={"model": {"hidden_size": 128}})
    fake_job(sweep, 1, model="lstm", dataset="pmnist", seed=3,
             evaluations=[[100, 0.123, 0.30]], settings={"model": {"hidden_size": 128}})
    collect_main([str(sweep)])
    with open(sweep / "results.csv") as f:
        rows = {row["job"]: row for row in csv.DictReader(f)}
    assert {rows[str(sweep / "0")]["seed"], rows[str(sweep / "1")]["seed"]} == {"7", "3"}
    assert rows[str(sweep / "1")]["hidden_size"] == "128"
    table = _table((sweep / "results.md").read_text(), "## Table 1")
    assert table["arnn"]["mnist ours"] == "51.2% (1)"  # not 70.0 (validation), not 40.0 (final)
    assert table["arnn"]["mnist paper"] == "98.0%"
    assert table["lstm"]["pmnist ours"] == "12.3% (1)"
    assert table["lstm"]["pmnist paper"] == "92.6%"


def test_every_registry_setting_reaches_the_tables(monkeypatch, tmp_path):
    """A toy setting of an optimizer and of a dataset becomes a column by itself."""
    from arnn import optimizers
    from arnn.data import tasks

    monkeypatch.setitem(optimizers.OPTIMIZERS, "toy_opt", optimizers.OptimizerSpec(
        optimizers.OPTIMIZERS["sgd"].build, settings={"toy_beta": float}))
    monkeypatch.setitem(tasks.DATASETS, "toy_data", tasks.DatasetSpec(
        tasks.DATASETS["digits"].reader, 1 / 16, settings={"toy_level": int}))
    assert {"toy_beta", "toy_level"} <= set(csv_columns())
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, settings={"optimizer": {"toy_beta": 0.25}, "dataset": {"toy_level": 3}},
             evaluations=[[100, 0.5, 0.6]])
    collect_main([str(sweep)])
    row = next(csv.DictReader(open(sweep / "results.csv")))
    assert (row["toy_beta"], row["toy_level"]) == ("0.25", "3")


def test_collector_reports_accuracy_against_the_sequence_length(tmp_path):
    """Jobs that differ only in T and seed: one line per model, mean ± std over the seeds."""
    sweep, num = tmp_path / "sweep", 0
    accuracy = {("lstm", 25): [0.9, 0.8, 0.7], ("lstm", 300): [0.1, 0.12, 0.08],
                ("gated_arnn", 25): [0.9, 0.9, 0.9], ("gated_arnn", 300): [0.5, 0.6]}
    for (model, seq_len), values in accuracy.items():
        for seed, value in enumerate(values):
            fake_job(sweep, num, model=model, dataset="noise_digits", seed=seed,
                     evaluations=[[100, value, value + 0.05]],
                     settings={"dataset": {"seq_len": seq_len}})
            num += 1
    collect_main([str(sweep)])
    md = (sweep / "results.md").read_text()
    table = md.split("against the sequence length T")[1]
    lstm = next(line for line in table.splitlines() if "| lstm |" in line)
    gated = next(line for line in table.splitlines() if "| gated_arnn |" in line)
    assert "T=25 | T=300" in table
    assert lstm.endswith("| 80.0 ± 10.0% (3) | 10.0 ± 2.0% (3) |")
    assert gated.endswith("| 90.0 ± 0.0% (3) | 55.0 ± 7.1% (2) |")
    assert (sweep / "results_length.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tie_for_the_best_is_named(tmp_path):
    """135 validation examples tie often: the chosen point says how many others had its score."""
    sweep = tmp_path / "sweep"
    for num, (lr, val) in enumerate([(0.1, 0.9), (0.2, 0.9), (0.3, 0.8)]):
        fake_job(sweep, num, lr=lr, evaluations=[[100, 0.5, val]])
    (point,) = best_per_task(collect([sweep]).jobs, "best_val_accuracy").values()
    assert point.settings["lr"] == 0.1 and point.tied == 1
    collect_main([str(sweep)])
    assert "(tied with 1 other configuration(s): the first in job order)" in _best_section(sweep)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_figure_draws_only_the_settings_swept(tmp_path):
    """A `model=arnn,gated_arnn seed=0,1` sweep: each model keeps its preset's lr (they differ
    between models, never within one) and momentum is a constant: nothing was swept, one panel
    of the tasks by seed. Sweeping lr within a model gives lr its panel, and only it."""
    from arnn.report.figures import sensitivity_figure, swept

    for num, (model, lr, seed) in enumerate([("arnn", 0.1, 0), ("arnn", 0.1, 1),
                                             ("gated_arnn", 0.3, 0), ("gated_arnn", 0.3, 1)]):
        fake_job(tmp_path / "a", num, model=model, lr=lr, seed=seed,
                 evaluations=[[10, 0.5, 0.5 + seed / 10]])
    jobs = collect([tmp_path / "a"]).jobs
    assert swept(jobs) == []
    width, _ = _png_size(sensitivity_figure(jobs, "best_val_accuracy"))
    assert width == 504  # one panel: 4.2 inches at 120 dpi
    for num, lr in enumerate([0.1, 0.2, 0.3]):
        fake_job(tmp_path / "b", num, lr=lr, evaluations=[[10, 0.5, lr]])
    jobs = collect([tmp_path / "b"]).jobs
    assert swept(jobs) == ["lr"]
    assert _png_size(sensitivity_figure(jobs, "best_val_accuracy"))[0] == 504


def test_many_swept_settings_wrap_onto_rows(tmp_path):
    from arnn.report.figures import PANELS_PER_ROW, sensitivity_figure

    for num in range(4):
        fake_job(tmp_path, num, lr=0.1 * (num + 1), evaluations=[[10, 0.5, 0.5]],
                 settings={"model": {"eps": [0.1, 1.0][num % 2], "gamma": num / 10,
                                     "sigma_w": float(num)}})
    jobs = collect([tmp_path]).jobs
    width, height = _png_size(sensitivity_figure(jobs, "best_val_accuracy"))
    assert width == int(4.2 * PANELS_PER_ROW * 120) and height == int(3.4 * 2 * 120)
