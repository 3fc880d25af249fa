"""Command line of scripts/gradient_flow.py: build models (fresh from the configs, or from a
run directory's config and checkpoint), compute gradient flow on one batch, plot it, and print
what explains it: the input gates and how much of the tanh is saturated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from arnn.bounded import load_yaml
from arnn.build import build
from arnn.checkpoint import CHECKPOINT, check_compatible, load_checkpoint, max_checkpoint_bytes
from arnn.data import SequenceTask
from arnn.dynamics import (
    SATURATED,
    gate_trace,
    gradient_flow,
    plot_eigenvalues,
    plot_gradient_flow,
    saturation,
    starting_states,
)
from arnn.errors import OneLineParser, UserError, exit_with, positive_int
from arnn.schema import compose_config, register_configs
from arnn.spec import RunSpec
from arnn.stability import eigenvalues


def curves(configs: dict[str, tuple[DictConfig, Path | None]], batch: int,
           data_dir: str | None
           ) -> tuple[dict[str, np.ndarray], ...]:
    """Name -> mean ||dL/dh_t|| for each (config, optional run directory); name -> the
    eigenvalues of the recurrent matrix, name -> the input gates over t (arnn.dynamics
    .gate_trace) and name -> the saturated fraction over t (arnn.dynamics.saturation), for the
    models that have them."""
    flows, spectra, gates, saturated = {}, {}, {}, {}
    tasks: dict[tuple[str, str, str], SequenceTask] = {}  # models on one dataset share it
    for name, (cfg, run_dir) in configs.items():
        if data_dir is not None:
            cfg.data_dir = data_dir
        key = (OmegaConf.to_yaml(cfg.dataset), cfg.data_dir, cfg.device)
        parts = build(RunSpec.of(cfg), tasks.get(key))
        task, model = tasks.setdefault(key, parts.task), parts.model
        if run_dir is not None:
            path = run_dir / CHECKPOINT
            limit = max_checkpoint_bytes(model, task.num_train, cfg.train.steps)
            weights = load_checkpoint(path, limit)["model"]
            check_compatible(path, weights, model)
            model.load_state_dict(weights)
        x, y = next(task.eval_batches(batch))
        states = model.cell.step_states(x)  # one pass of the recurrence serves every measure
        flows[name] = gradient_flow(model, x, y, states)
        matrix = model.cell.recurrent_matrix()
        if matrix is not None and (mu := eigenvalues(matrix)) is not None:
            spectra[name] = mu.numpy()
        starts = starting_states(states)
        if (trace := gate_trace(model.cell, x, starts)) is not None:
            gates[name] = trace
        if (fraction := saturation(model.cell, x, starts=starts)) is not None:
            saturated[name] = fraction
    return flows, spectra, gates, saturated


def _start_middle_end(values: np.ndarray, number: str) -> str:
    """A per-step measure's batch mean at t = 1, T/2 + 1 and T, each in `number`'s format."""
    steps = len(values)
    return ", ".join(f"t={t + 1}: {values[t].mean():{number}}" for t in (0, steps // 2, steps - 1))


def gate_lines(gates: dict[str, np.ndarray], eps: dict[str, float]) -> list[str]:
    """Per gated model: its mean gate, the step it makes (eps z), how many gates are shut or
    open, and the mean gate at the start, the middle and the end of the sequence."""
    return [f"{name:>28}: mean gate z {z.mean():.3f} (eps z = {eps[name] * z.mean():.3g}), "
            f"z < 0.1: {(z < 0.1).mean():.1%}, z > 0.9: {(z > 0.9).mean():.1%}; "
            f"{_start_middle_end(z, '.3f')}" for name, z in gates.items()]


def saturation_lines(saturated: dict[str, np.ndarray], spectra: dict[str, np.ndarray],
                     eps: dict[str, float]) -> list[str]:
    """Per model: how much of its tanh is saturated, over the sequence and at its start, middle
    and end, beside the recurrent matrix's largest |mu| and the Euler step's eps |mu|."""
    lines = []
    for name, fraction in saturated.items():
        line = (f"{name:>28}: |a_t| > {SATURATED:g} for {fraction.mean():.1%} of the tanh's "
                f"inputs; {_start_middle_end(fraction, '.1%')}")
        if name in spectra:
            radius = float(np.abs(spectra[name]).max())
            line += f"; max |mu| {radius:.3g} (eps |mu| = {eps[name] * radius:.3g})"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("gradient_flow.png"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--models", default="lstm,arnn,gated_arnn",
                        help="models at initialisation (comma list; empty for none)")
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a run directory (its .hydra/config.yaml and checkpoint)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for the models at initialisation")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--eigenvalues", type=Path, default=None, metavar="PNG",
                        help="also draw the recurrent matrices' eigenvalues to this file")
    args = parser.parse_args(argv)
    configs: dict[str, tuple[DictConfig, Path | None]] = {}
    for model in filter(None, args.models.split(",")):
        cfg = compose_config([f"model={model}", f"dataset={args.dataset}", *args.set])
        configs[f"{model} (init)"] = (cfg, None)
    try:
        for run_dir in args.run:
            register_configs()
            cfg = OmegaConf.create(load_yaml(run_dir / ".hydra" / "config.yaml", 1 << 20,
                                             UserError))
            configs[f"{cfg.model.name} ({run_dir.name})"] = (cfg, run_dir)
        results, spectra, gates, saturated = curves(configs, args.batch, args.data_dir)
    except UserError as e:
        exit_with(e)
    fig = plot_gradient_flow(results, f"gradient flow on {args.dataset}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    for name, norms in results.items():
        print(f"{name:>28}: ||dL/dh_1|| = {norms[0]:.3e}, ||dL/dh_T|| = {norms[-1]:.3e}, "
              f"ratio {norms[0] / max(norms[-1], 1e-45):.3g}")
    print(f"wrote {args.out}")
    eps = {name: cfg.model.eps for name, (cfg, _) in configs.items() if cfg.model.eps is not None}
    print("\n".join(gate_lines(gates, eps) + saturation_lines(saturated, spectra, eps)))
    if args.eigenvalues is not None:
        gammas = {cfg.model.gamma for cfg, _ in configs.values() if cfg.model.gamma is not None}
        fig = plot_eigenvalues(spectra, "eigenvalues of the recurrent matrix",
                               gammas.pop() if len(gammas) == 1 else None)
        fig.savefig(args.eigenvalues, dpi=110)
        for name, mu in spectra.items():
            print(f"{name:>28}: Re(mu) in [{mu.real.min():.4g}, {mu.real.max():.4g}], "
                  f"max |Im(mu)| = {abs(mu.imag).max():.4g}")
        print(f"wrote {args.eigenvalues}")
