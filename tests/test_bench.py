"""The benchmark script's output contract (not its timings)."""

import json

import pytest

from arnn.bench import main


def test_bench_quick_json_rows(tmp_path):
    out = tmp_path / "bench.json"
    main(["--device", "cpu", "--quick", "--backends", "reference,torch", "--repeat", "1",
          "--json", str(out), "--markdown", str(tmp_path / "bench.md")])
    rows = json.loads(out.read_text())
    impls = {r["impl"] for r in rows}
    assert impls == {"nn.LSTM", "nn.RNN", "arnn/reference", "arnn/torch",
                     "gated_arnn/reference", "gated_arnn/torch"}
    assert {r["shape"] for r in rows} == {"T64_m1_n32", "T128_m3_n64"}
    for r in rows:
        assert r["ms"] > 0 and r["precision"] == "fp32"
        if r["impl"] == "nn.LSTM":
            assert r["x_lstm"] == 1.0
    assert "| T64_m1_n32 | gated_arnn/torch |" in (tmp_path / "bench.md").read_text()


def test_loop_overhead_rows(tmp_path):
    out = tmp_path / "loop.json"
    main(["--loop", "device=cpu model.hidden_size=8 train.batch_size=16", "--loop-steps", "20",
          "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["steps"] == 20 and row["bare_step_ms"] > 0 and row["batch_ms"] > 0
    assert isinstance(row["runner_step_ms"], float)  # a difference of two timings: any sign
    # the derived columns are what they say, from the timings beside them
    assert row["overhead"] == pytest.approx(row["runner_step_ms"] / row["bare_step_ms"] - 1,
                                            abs=1e-3)
    assert row["batch_share"] == pytest.approx(row["batch_ms"] / row["bare_step_ms"], abs=1e-3)
    assert 0 < row["batch_share"] < 1 and row["backend"] == "cpu"
    assert row["config"] == "device=cpu model.hidden_size=8 train.batch_size=16"


def test_step_flops_are_the_products_torch_counts():
    """The arithmetic each row's GFLOP/s and floor stand on: the torch backend computes every
    matrix product with aten ops, so torch's FLOP counter sees them all (plus the head's)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from arnn.bench.steps import competitors, step_flops, training_step

    steps, m, n, batch = 5, 3, 8, 4
    x, y = torch.randn(batch, steps, m), torch.randint(0, 10, (batch,))
    models = competitors(m, n, torch.device("cpu"), ["torch"])
    for impl in ("arnn/torch", "gated_arnn/torch"):
        with FlopCounterMode(display=False) as counter:
            training_step(models[impl], x, y)
        head = 3 * 2 * batch * n * 10  # forward, weight and input gradients of the linear head
        assert counter.get_total_flops() == step_flops(impl, steps, m, n, batch) + head, impl


def test_runs_give_one_row_per_competitor_with_its_range(tmp_path):
    out = tmp_path / "bench.json"
    main(["--device", "cpu", "--shapes", "16:1:8", "--backends", "torch", "--repeat", "1",
          "--runs", "2", "--json", str(out), "--markdown", str(tmp_path / "bench.md")])
    rows = json.loads(out.read_text())
    assert sorted({r["run"] for r in rows}) == [1, 2] and len(rows) == 8
    table = (tmp_path / "bench.md").read_text()
    assert "the range over 2 runs" in table
    line = next(t for t in table.splitlines() if t.startswith("| T16_m1_n8 | arnn/torch |"))
    ms = [r["ms"] for r in rows if r["impl"] == "arnn/torch"]
    low, high = f"{min(ms):.2f}", f"{max(ms):.2f}"
    assert line.split(" | ")[2] == (low if low == high else f"{low}-{high}")
    assert table.count("| T16_m1_n8 | arnn/torch |") == 1


def test_profile_rows_split_the_step_into_phases_and_operators(tmp_path):
    out = tmp_path / "profile.json"
    main(["--device", "cpu", "--profile", "--shapes", "16:1:8", "--backends", "torch",
          "--json", str(out), "--markdown", str(tmp_path / "profile.md")])
    rows = json.loads(out.read_text())
    assert [(r["model"], r["backend"]) for r in rows] == [("arnn", "torch"),
                                                          ("gated_arnn", "torch")]
    for r in rows:
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0 and 0 < len(r["ops"]) <= 8
        times = [o["self_ms"] for o in r["ops"]]
        assert times == sorted(times, reverse=True) and all(o["calls"] >= 1 for o in r["ops"])
    assert "**gated_arnn/torch, T16_m1_n8**" in (tmp_path / "profile.md").read_text()
