"""The benchmark script's output contract (not its timings)."""

import json

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
    assert row["steps"] == 20 and row["bare_step_ms"] > 0
    assert isinstance(row["runner_step_ms"], float)  # a difference of two timings: any sign
    assert 0 < row["batch_share"] < 1
