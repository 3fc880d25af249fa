"""Launch variants of the triton backend, timed and checked against the torch backend
(`--tune`)."""

from __future__ import annotations

from functools import partial

import torch

from arnn.bench.steps import BATCH, TanhRNNCell, timer, training_step
from arnn.models import LSTMCell, SequenceClassifier, build_cell


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

    time_ms = timer(device)
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


