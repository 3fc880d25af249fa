"""Benchmarks: one training step of every recurrence side by side (`steps`), the runner's loop
overhead (`loop`), the triton backend's launch variants (`triton`).

    python scripts/bench.py --device cpu|cuda [--quick] [--json PATH] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from arnn.bench.loop import loop_overhead
from arnn.bench.profile import profile_markdown, profile_step, tanh_error
from arnn.bench.steps import (
    PAPER_SHAPES,
    QUICK_SHAPES,
    SMALL_SHAPES,
    markdown,
    run_benchmark,
)
from arnn.bench.triton import tune_triton
from arnn.errors import OneLineParser, positive_int
from arnn.host import keep_freed_memory, set_threads
from arnn.recurrence import BACKENDS, triton_available


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--backends", default=None,
                        help="comma list among reference,torch,cpu,triton (default: those that "
                             "run on the device; reference only with --quick)")
    parser.add_argument("--shapes", default=None,
                        help="comma list of T:m:n (default: the paper's three shapes; "
                             "`small`: the digits' and the noise-padded digits')")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for every competitor (default: torch's)")
    parser.add_argument("--repeat", type=positive_int, default=None)
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="the whole table this many times, one after the other")
    parser.add_argument("--tune", action="store_true",
                        help="time launch variants of the triton backend instead")
    parser.add_argument("--profile", action="store_true",
                        help="per-operator breakdown of arnn and gated_arnn's steps instead")
    parser.add_argument("--tanh-error", action="store_true",
                        help="the cpu kernel's tanh and sigmoid against float64 over every "
                             "finite float32 instead")
    parser.add_argument("--loop", action="append", default=[], metavar="OVERRIDES",
                        help="measure the runner's loop overhead for this config (space-"
                             "separated train.py overrides; repeatable) instead")
    parser.add_argument("--loop-steps", type=positive_int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="save the rows as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="save a markdown table")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    unknown = set((args.backends or "").split(",")) - {"", *BACKENDS}
    if unknown:
        parser.error(f"--backends {args.backends}: {', '.join(sorted(unknown))} is no backend "
                     f"(allowed: {', '.join(BACKENDS)})")
    try:
        args.shapes = _shapes(args.shapes, args.quick)
    except ValueError as e:
        parser.error(f"--shapes {args.shapes}: {e}")
    return args


def _shapes(text: str | None, quick: bool) -> list[tuple[int, ...]]:
    """--shapes as (T, m, n) triples; ValueError saying what is wrong."""
    if text == "small":
        return SMALL_SHAPES
    if not text:
        return QUICK_SHAPES if quick else PAPER_SHAPES
    shapes = []
    for shape in text.split(","):
        parts = shape.split(":")
        if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
            raise ValueError(f"{shape!r} is not T:m:n, three integers >= 1")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def _backends(args: argparse.Namespace, device: torch.device) -> list[str]:
    if args.backends:
        return args.backends.split(",")
    backends = (["reference"] if args.quick else []) + ["torch"]
    return backends + (["triton"] if triton_available(device) else ["cpu"]
                       if device.type == "cpu" else [])


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    device = torch.device(args.device)
    keep_freed_memory()  # as the runner does, for every competitor alike (arnn.host)
    set_threads(args.threads)
    repeat = args.repeat or (20 if device.type == "cuda" else 3)
    shapes, text = args.shapes, None
    if args.loop:
        rows = [loop_overhead(spec.split(), args.loop_steps) for spec in args.loop]
    elif args.tune:
        rows = tune_triton(device, shapes, warmup=2, repeat=repeat)
    elif args.tanh_error:
        rows = tanh_error()
        text = "\n".join(f"{r['function']}: largest error {r['abs']:.3g} (at {r['abs_at']:.6g}),"
                         f" {r['ulp']:.3g} units in the last place where the result is a normal"
                         f" float (at {r['ulp_at']:.6g})"
                         for r in rows)
    elif args.profile:
        rows = [profile_step(*shape, model, backend)
                for shape in shapes for model in ("arnn", "gated_arnn")
                for backend in _backends(args, device)]
        text = profile_markdown(rows)
    else:
        rows = [row | {"run": run} for run in range(1, args.runs + 1)
                for row in run_benchmark(device, shapes, _backends(args, device),
                                         warmup=3 if device.type == "cuda" else 1,
                                         repeat=repeat)]
        text = markdown(rows)
    if text is not None:
        print(text)
        if args.markdown:
            args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
