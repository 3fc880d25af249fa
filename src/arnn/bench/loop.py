"""The runner's cost per step against a bare training step of the same model (`--loop`).

The runner's cost per step is (time of `Loop.fit` for 2N steps - time for N steps) / N: the
evaluation and checkpoint at the end of both runs cancel out; logging, divergence checks and
batching stay in.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from arnn.bench.steps import device_name, ms_per_call, training_step
from arnn.build import build
from arnn.diagnostics import diagnostics
from arnn.loop import Loop
from arnn.monitor import Monitor
from arnn.schema import compose_config
from arnn.spec import RunSpec
from arnn.state import Checkpoints
from arnn.storage import Folder


def _loop_for(overrides: list[str], total: int) -> Loop:
    cfg = compose_config([*overrides, f"train.steps={total}", f"train.eval_every={total}",
                          f"train.checkpoint_every={total}"])
    spec = RunSpec.of(cfg)
    parts = build(spec)
    return Loop(parts, spec, diagnostics=diagnostics(spec, parts.model, parts.task))


def _fit_ms(loop: Loop, run_dir: Path) -> float:
    """Milliseconds of `loop.fit` to its train.steps in `run_dir`."""
    with Folder(run_dir) as folder, Monitor(folder, loop.steps, 0) as monitor:
        status = []
        checkpoints = Checkpoints(folder, loop.model, loop.task.num_train, loop.steps)
        elapsed = ms_per_call(lambda: status.append(loop.fit(monitor, checkpoints)), 1,
                              loop.parts.device)
    if status != ["completed"]:  # a run cut short would time fewer steps than asked
        raise RuntimeError(f"the timed run {status} at step {loop.step}: lower the lr")
    return elapsed


def loop_overhead(overrides: list[str], steps: int) -> dict:
    """The runner's loop against a bare forward + backward + optimiser step on one fixed batch
    (same model, same device), and the cost of building a batch."""
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: a short run through every code path (kernel compilation for the training
        # and evaluation shapes, LAPACK for the eigenvalues, first checkpoint, first event).
        warm = _loop_for(overrides, 2)
        _fit_ms(warm, Path(tmp) / "warm")
        parts = warm.parts
        x, y = parts.task.train_batch(parts.sampler.next())

        def bare() -> None:
            training_step(parts.model, x, y)
            parts.optimizer.step()

        bare_ms = ms_per_call(bare, steps, parts.device)
        batch_ms = ms_per_call(lambda: parts.task.train_batch(parts.sampler.next()), steps,
                               parts.device)
        fits = {total: _fit_ms(_loop_for(overrides, total), Path(tmp) / str(total))
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
