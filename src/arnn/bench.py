"""Side-by-side timing of one training step (forward + backward) of each recurrence.

Competitors run in one process on the same inputs: torch's nn.LSTM and nn.RNN(tanh) (cuDNN on
a GPU) and our arnn / gated_arnn cells with each backend. Every row is the median of several
timed steps after warm-up; ratios are to nn.LSTM and nn.RNN at the same shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from arnn.models import LSTMCell, RecurrentCell, SequenceClassifier, build_cell
from arnn.recurrence import triton_available

# The paper's three task shapes (B=128): sMNIST/pMNIST, pixel CIFAR-10, noise-padded CIFAR-10.
PAPER_SHAPES = [(784, 1, 128), (1024, 3, 256), (1000, 96, 256)]
QUICK_SHAPES = [(64, 1, 32), (128, 3, 64)]
BATCH = 128


class TanhRNNCell(RecurrentCell):
    """torch's nn.RNN(tanh): the cheapest recurrence cuDNN offers, the speed bar."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0].transpose(0, 1)


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """What is timed: forward, cross-entropy on the last state's logits, backward."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def _timer(device: torch.device) -> Callable[[Callable[[], None], int, int], float]:
    def time_ms(fn: Callable[[], None], warmup: int, repeat: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeat):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True
                )
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return time_ms


def competitors(m: int, n: int, device: torch.device, backends: list[str]) -> dict[str, nn.Module]:
    cells: dict[str, RecurrentCell] = {
        "nn.LSTM": LSTMCell(m, n),
        "nn.RNN": TanhRNNCell(m, n),
    }
    for name in ("arnn", "gated_arnn"):
        for backend in backends:
            cells[f"{name}/{backend}"] = build_cell(name, m, n, backend=backend)
    return {k: SequenceClassifier(c, 10).to(device) for k, c in cells.items()}


def run_benchmark(
    device: torch.device,
    shapes: list[tuple[int, int, int]],
    backends: list[str],
    warmup: int,
    repeat: int,
    batch: int = BATCH,
) -> list[dict]:
    time_ms = _timer(device)
    rows = []
    for steps, m, n in shapes:
        shape = f"T{steps}_m{m}_n{n}"
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, steps, m, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        times = {}
        for impl, model in competitors(m, n, device, backends).items():
            times[impl] = time_ms(partial(training_step, model, x, y), warmup, repeat)
        for impl, ms in times.items():
            ratio_lstm, ratio_rnn = ms / times["nn.LSTM"], ms / times["nn.RNN"]
            rows.append({
                "shape": shape, "impl": impl, "ms": round(ms, 4),
                "x_lstm": round(ratio_lstm, 3), "x_rnn": round(ratio_rnn, 3),
                "batch": batch, "device": device_name(device), "precision": "fp32",
            })
            print(f"{shape:>16} {impl:>22} {ms:10.2f} ms  x LSTM {ratio_lstm:6.2f}  "
                  f"x RNN {ratio_rnn:6.2f}", flush=True)
    return rows


def _triton_variants(n: int) -> list[dict[str, int | bool]]:
    if n <= 128:
        grid = [(16, 8, True, 32), (16, 4, False, 32), (4, 8, True, 32), (2, 8, True, 32),
                (1, 4, True, 32), (1, 8, True, 32), (2, 8, False, 32), (1, 4, False, 32)]
    else:
        grid = [(16, 4, False, 32), (16, 4, False, 64), (4, 4, False, 16), (2, 4, False, 32),
                (2, 8, False, 32), (1, 4, False, 32), (1, 8, False, 64), (4, 8, False, 16)]
    return [{"block_b": b, "num_warps": w, "hold": h, "block_k": k} for b, w, h, k in grid]


def tune_triton(device: torch.device, shapes: list[tuple[int, int, int]], warmup: int,
                repeat: int, batch: int = BATCH) -> list[dict]:
    """Time launch variants of the triton backend (gated_arnn) against nn.RNN, and check each
    variant's states and gradients against the torch backend on the same device."""
    from arnn.recurrence import triton_backend

    time_ms = _timer(device)
    rows = []
    for steps, m, n in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, steps, m, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        torch.manual_seed(0)
        rnn = SequenceClassifier(TanhRNNCell(m, n), 10).to(device)
        lstm = SequenceClassifier(LSTMCell(m, n), 10).to(device)
        reference = SequenceClassifier(build_cell("gated_arnn", m, n, backend="torch"), 10)
        reference = reference.to(device)

        rnn_ms = time_ms(partial(training_step, rnn, x, y), warmup, repeat)
        lstm_ms = time_ms(partial(training_step, lstm, x, y), warmup, repeat)
        training_step(reference, x, y)
        ref_grads = [p.grad.clone() for p in reference.parameters()]
        for variant in _triton_variants(n):
            triton_backend.tuning.clear()
            triton_backend.tuning.update(variant)
            model = SequenceClassifier(build_cell("gated_arnn", m, n, backend="triton"), 10)
            model.load_state_dict(reference.state_dict())
            model = model.to(device)
            row: dict = {"shape": f"T{steps}_m{m}_n{n}", **variant, "rnn_ms": round(rnn_ms, 4),
                         "lstm_ms": round(lstm_ms, 4)}
            try:
                training_step(model, x, y)
                row["grad_err"] = max(
                    ((p.grad - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
                    for p, r in zip(model.parameters(), ref_grads, strict=True)
                )
                row["ms"] = round(time_ms(partial(training_step, model, x, y), warmup, repeat), 4)
                row["x_rnn"] = round(row["ms"] / rnn_ms, 3)
                row["x_lstm"] = round(row["ms"] / lstm_ms, 3)
            except Exception as e:  # noqa: BLE001 - a variant that does not compile or fit
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(row, flush=True)
            rows.append(row)
        triton_backend.tuning.clear()
    return rows


def loop_overhead(overrides: list[str], steps: int) -> dict:
    """The runner's loop against a bare forward + backward + optimiser step on one fixed batch
    (same model, same device), and the cost of building a batch. The runner's cost per step is
    (time of `Loop.fit` for 2N steps - time for N steps) / N: the evaluation and checkpoint
    at the end of both runs cancel out; logging, divergence checks and batching stay in."""
    import tempfile

    from arnn.build import build
    from arnn.config import compose_config
    from arnn.identity import fingerprint
    from arnn.loop import Checkpoints, Loop
    from arnn.monitor import Monitor

    def loop_for(total: int) -> Loop:
        cfg = compose_config([*overrides, f"train.steps={total}", f"train.eval_every={total}",
                              f"train.checkpoint_every={total}"])
        return Loop(build(cfg), cfg, fingerprint(cfg))

    def fit_ms(loop: Loop, run_dir: Path) -> float:
        with Monitor(run_dir, loop.cfg.train.steps, 0) as monitor:
            status = None

            def fit() -> None:
                nonlocal status
                status = loop.fit(monitor, Checkpoints(run_dir))

            elapsed = _ms_per_call(fit, 1, loop.parts.device)
        if status != "completed":  # a run cut short would time fewer steps than asked
            raise RuntimeError(f"the timed run {status} at step {loop.step}: lower the lr")
        return elapsed

    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: a short run through every code path (kernel compilation for the training
        # and evaluation shapes, LAPACK for the eigenvalues, first checkpoint, first event).
        warm = loop_for(2)
        fit_ms(warm, Path(tmp) / "warm")
        parts = warm.parts
        x, y = parts.task.train_batch(parts.sampler.next())

        def bare() -> None:
            training_step(parts.model, x, y)
            parts.optimizer.step()

        bare_ms = _ms_per_call(bare, steps, parts.device)
        batch_ms = _ms_per_call(lambda: parts.task.train_batch(parts.sampler.next()), steps,
                                parts.device)
        fits = {total: fit_ms(loop_for(total), Path(tmp) / str(total))
                for total in (steps, 2 * steps)}
    loop_ms = (fits[2 * steps] - fits[steps]) / steps
    row = {
        "config": " ".join(overrides), "device": device_name(parts.device),
        "backend": getattr(parts.model.cell, "backend", "torch.nn"),
        "steps": steps, "bare_step_ms": round(bare_ms, 4), "batch_ms": round(batch_ms, 4),
        "runner_step_ms": round(loop_ms, 4),
        "overhead": round(loop_ms / bare_ms - 1, 4), "batch_share": round(batch_ms / bare_ms, 4),
    }
    print(f"{row['config']}: bare step {bare_ms:.3f} ms, runner step {loop_ms:.3f} ms "
          f"(overhead {100 * row['overhead']:+.1f}%), building a batch {batch_ms:.3f} ms "
          f"({100 * row['batch_share']:.2f}% of a step)", flush=True)
    return row


def _ms_per_call(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Milliseconds per call of `fn`, over `calls` calls (the device synchronised around)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / calls


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def markdown(rows: list[dict]) -> str:
    lines = [f"Device: {rows[0]['device']}, batch {rows[0]['batch']}, fp32, ms per training "
             "step (forward + backward)", "",
             "| shape | impl | ms | x nn.LSTM | x nn.RNN(tanh) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['impl']} | {r['ms']:.2f} | {r['x_lstm']:.2f} | "
                     f"{r['x_rnn']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--backends", default=None,
                        help="comma list among reference,torch,triton (default: all that run "
                             "on the device; reference only with --quick)")
    parser.add_argument("--shapes", default=None,
                        help="comma list of T:m:n (default: the paper's three shapes)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--tune", action="store_true",
                        help="time launch variants of the triton backend instead")
    parser.add_argument("--loop", action="append", default=[], metavar="OVERRIDES",
                        help="measure the runner's loop overhead for this config (space-"
                             "separated train.py overrides; repeatable) instead")
    parser.add_argument("--loop-steps", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="save the rows as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="save a markdown table")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    if args.backends:
        backends = args.backends.split(",")
    else:
        backends = (["reference"] if args.quick else []) + ["torch"]
        if triton_available(device):
            backends.append("triton")
    repeat = args.repeat or (20 if device.type == "cuda" else 3)
    shapes = QUICK_SHAPES if args.quick else PAPER_SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(":")) for s in args.shapes.split(",")]
    if args.loop:
        rows = [loop_overhead(spec.split(), args.loop_steps) for spec in args.loop]
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return
    if args.tune:
        rows = tune_triton(device, shapes, warmup=2, repeat=repeat)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return
    rows = run_benchmark(device, shapes, backends,
                         warmup=3 if device.type == "cuda" else 1, repeat=repeat)
    table = markdown(rows)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")
