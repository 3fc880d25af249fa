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
from arnn.bench.steps import PAPER_SHAPES, QUICK_SHAPES, markdown, run_benchmark
from arnn.bench.triton import tune_triton
from arnn.recurrence import triton_available


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
