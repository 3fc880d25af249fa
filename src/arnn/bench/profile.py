"""Where a training step's time goes (`--profile`): torch.profiler's operators per step, split
into forward and backward; and the cpu kernel's tanh and sigmoid against float64 over every
finite float32 (`--tanh-error`)."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from arnn.bench.steps import BATCH
from arnn.models import SequenceClassifier, build_cell


def profile_step(steps: int, m: int, n: int, model: str, backend: str, repeat: int = 3
                 ) -> dict:
    """Milliseconds per step of each phase (forward, backward) and of the operators taking the
    most self time, over `repeat` profiled steps after a warm-up."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, steps, m, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    net = SequenceClassifier(build_cell(model, m, n, backend=backend), 10)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        with record_function("forward"):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        with record_function("backward"):
            loss.backward()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeat):
            step()
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e3 / repeat for e in events
              if e.key in ("forward", "backward")}
    ops = sorted((e for e in events if e.key not in ("forward", "backward")),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {"shape": f"T{steps}_m{m}_n{n}", "model": model, "backend": backend,
            "threads": torch.get_num_threads(), **{f"{k}_ms": round(v, 2) for k, v in
                                                   phases.items()},
            "ops": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3 / repeat, 2),
                     "calls": e.count // repeat} for e in ops]}


def profile_markdown(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        lines += [f"**{r['model']}/{r['backend']}, {r['shape']}** ({r['threads']} threads): "
                  f"forward {r.get('forward_ms', 0):.1f} ms, backward "
                  f"{r.get('backward_ms', 0):.1f} ms per step", "",
                  "| operator | self ms per step | calls per step |", "|---|---|---|"]
        lines += [f"| {o['op']} | {o['self_ms']:.2f} | {o['calls']} |" for o in r["ops"]]
        lines.append("")
    return "\n".join(lines)


def pointwise_errors(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's float32 `name` (tanh, sigmoid) at `x` against float64: each point's
    absolute error, and its error in units of the last place of the exact value where that
    value is a normal float32 (0 elsewhere: below 2^-126, e.g. sigmoid(x < -87), only the
    absolute error means anything)."""
    from arnn.recurrence import cpu_backend

    truth = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}[name](x.double())
    error = (cpu_backend.pointwise(name, x).double() - truth).abs()
    spacing = torch.nextafter(truth.float().abs(), torch.tensor(float("inf"))).double() \
        - truth.float().abs().double()
    ulps = torch.where(truth.abs() >= 2.0 ** -126, error / spacing.clamp_min(2.0 ** -149), 0.0)
    return error, ulps


def tanh_error(chunk: int = 1 << 24) -> list[dict]:
    """The kernel's float32 tanh and sigmoid against float64 over every finite float32: the
    largest absolute error, and the largest in units of the last place (`pointwise_errors`)."""
    worst = {name: {"abs": 0.0, "abs_at": 0.0, "ulp": 0.0, "ulp_at": 0.0}
             for name in ("tanh", "sigmoid")}
    for start in range(-(1 << 31), 1 << 31, chunk):
        x = torch.arange(start, start + chunk, dtype=torch.int64).to(torch.int32).view(
            torch.float32)
        x = x[torch.isfinite(x)]
        for name in ("tanh", "sigmoid"):
            w = worst[name]
            for key, values in zip(("abs", "ulp"), pointwise_errors(name, x), strict=True):
                i = int(values.argmax())
                if values[i] > w[key]:
                    w[key], w[f"{key}_at"] = float(values[i]), float(x[i])
    return [{"function": name, **w} for name, w in worst.items()]
