"""Side-by-side timing of one training step (forward + backward) of each recurrence.

Competitors run in one process on the same inputs: torch's nn.LSTM and nn.RNN(tanh) (cuDNN on
a GPU) and our arnn / gated_arnn cells with each backend. Every row is the median of several
timed steps after warm-up; ratios are to nn.LSTM and nn.RNN at the same shape. Each row also
gives its arithmetic (the matrix products of a step, `step_flops`), the rate it achieves, and
its distance from the floor that arithmetic sets at the machine's own matrix-product rate
(torch.mm of a batch of 128 states by an n x n matrix, measured in the same run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from arnn.models import LSTMCell, RecurrentCell, SequenceClassifier, build_cell

# The paper's three task shapes (B=128): sMNIST/pMNIST, pixel CIFAR-10, noise-padded CIFAR-10.
PAPER_SHAPES = [(784, 1, 128), (1024, 3, 256), (1000, 96, 256)]
# The runner's own small tasks: the digits (default), the noise-padded digits.
SMALL_SHAPES = [(64, 1, 32), (300, 8, 32)]
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


def timer(device: torch.device) -> Callable[[Callable[[], None], int, int], float]:
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


def step_flops(impl: str, steps: int, m: int, n: int, batch: int = BATCH) -> float:
    """The multiply-adds (x 2) of one training step's matrix products: the recurrent product
    forward, its transpose backward and the recurrent weights' gradient (3 T B n^2 each: x 4
    for the LSTM's gates), the input projection and its weights' gradient (2 T B k n m)."""
    gates = 4 if impl == "nn.LSTM" else 2 if impl.startswith("gated_arnn") else 1
    recurrent = 1 if impl.startswith(("arnn", "gated_arnn")) else gates  # A is shared by gates
    return 2.0 * steps * batch * (3 * recurrent * n * n + 2 * gates * n * m)


def matmul_rate(n: int, device: torch.device, batch: int = BATCH) -> float:
    """GFLOP/s of torch.mm at (batch, n) @ (n, n), the recurrences' inner product."""
    h, w = torch.randn(batch, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(batch, n, device=device)
    ms = timer(device)(lambda: torch.mm(h, w, out=out), 50, 2000 if n <= 128 else 500)
    return 2 * batch * n * n / ms / 1e6


def run_benchmark(
    device: torch.device,
    shapes: list[tuple[int, int, int]],
    backends: list[str],
    warmup: int,
    repeat: int,
    batch: int = BATCH,
) -> list[dict]:
    time_ms = timer(device)
    rows = []
    for steps, m, n in shapes:
        shape = f"T{steps}_m{m}_n{n}"
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, steps, m, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        times = {}
        for impl, model in competitors(m, n, device, backends).items():
            times[impl] = time_ms(partial(training_step, model, x, y), warmup, repeat)
        rate = matmul_rate(n, device, batch)
        for impl, ms in times.items():
            ratio_lstm, ratio_rnn = ms / times["nn.LSTM"], ms / times["nn.RNN"]
            flops = step_flops(impl, steps, m, n, batch)
            rows.append({
                "shape": shape, "impl": impl, "ms": round(ms, 4),
                "x_lstm": round(ratio_lstm, 3), "x_rnn": round(ratio_rnn, 3),
                "gflop": round(flops / 1e9, 3), "gflop_per_s": round(flops / ms / 1e6, 1),
                "mm_gflop_per_s": round(rate, 1), "x_floor": round(ms / (flops / rate / 1e6), 2),
                "batch": batch, "device": device_name(device), "precision": "fp32",
            })
            print(f"{shape:>16} {impl:>22} {ms:10.2f} ms  x LSTM {ratio_lstm:6.2f}  "
                  f"x RNN {ratio_rnn:6.2f}  {flops / ms / 1e6:6.1f} GFLOP/s (mm {rate:.0f}: "
                  f"{rows[-1]['x_floor']:.2f}x the floor)", flush=True)
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def ms_per_call(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Milliseconds per call of `fn`, over `calls` calls (the device synchronised around)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / calls


def _span(values: list[float], digits: int) -> str:
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def markdown(rows: list[dict]) -> str:
    """One line per shape and competitor: with several runs (`--runs`), each figure as the
    range over them (min-max), so that the table carries its own spread."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["impl"]), []).append(r)
    runs = len({r.get("run", 1) for r in rows})
    lines = [f"Device: {rows[0]['device']}, batch {rows[0]['batch']}, fp32, ms per training "
             "step (forward + backward); GFLOP/s of the step's matrix products, and the step "
             "against the floor they set at torch.mm's rate (mm)"
             + (f"; each figure the range over {runs} runs in a row" if runs > 1 else ""), "",
             "| shape | impl | ms | x nn.LSTM | x nn.RNN(tanh) | GFLOP/s | mm GFLOP/s | x floor |",
             "|---|---|---|---|---|---|---|---|"]
    for (shape, impl), group in groups.items():
        cells = [_span([r[key] for r in group], digits) for key, digits in (
            ("ms", 2), ("x_lstm", 2), ("x_rnn", 2), ("gflop_per_s", 1), ("mm_gflop_per_s", 0),
            ("x_floor", 2))]
        lines.append(f"| {shape} | {impl} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
