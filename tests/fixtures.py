"""Helpers shared by the tests: paths, composing configs, running the CLI, writing files in the
real formats. Test modules import from here (never from each other); pytest fixtures that wrap
these live in conftest.py."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from arnn.schema import compose_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("ARNN_TEST_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Canonical MNIST (gzip IDX files) and the CIFAR-10 JPEG copy, laid beside the checkout on the
# project machines and in CI; elsewhere point ARNN_TEST_MNIST / ARNN_TEST_CIFAR_JPEG at them.
MNIST_DIR = Path(os.environ.get("ARNN_TEST_MNIST", SHARED_DATA / "mnist"))
CIFAR_JPEG_DIR = Path(os.environ.get("ARNN_TEST_CIFAR_JPEG", SHARED_DATA / "cifar10-jpeg"))
# Small runs: the digits with 16 units, batch 32, on the CPU.
SMALL = ("model.hidden_size=16", "train.batch_size=32", "device=cpu")
# A point of the paper's Appendix C grid, for tests that must not move with the presets
PAPER_POINT = ("model.eps=0.01", "model.gamma=0.01", "model.sigma_w=1")


def compose_cfg(*overrides: str, return_hydra_config: bool = False):
    """The config `python train.py <overrides>` would run, composed through Hydra."""
    return compose_config(list(overrides), CONF, return_hydra_config)


def run_cli_patched(patch: str, *args: str, timeout: float = 300):
    """`python train.py <args>` in a subprocess that first runs `patch` (Python source: what a
    test makes fail inside the run, e.g. an OSError from a writer)."""
    script = f"{patch}\nimport sys\nsys.argv = ['train.py', *{list(args)!r}]\n" \
             "from arnn.cli import main; main()\n"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """`python train.py <args>` in a subprocess, as a user would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> Path:
    """A small CIFAR-10 in the real python-pickle batch format (channel-major rows)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def read_checkpoint(path: Path) -> dict:
    """A checkpoint of these tests' small models (within a cap that fits them all)."""
    from arnn.checkpoint import load_checkpoint

    return load_checkpoint(path, 64 << 20)


def checkpoint_params(run_dir: Path, name: str = "last.pt") -> dict:
    """The model weights a run directory's checkpoint holds."""
    return read_checkpoint(run_dir / "checkpoints" / name)["model"]


def files_under(root: Path) -> dict[Path, bytes]:
    """Every regular file under `root` and its bytes, but the lock (it names its latest
    holder)."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != ".arnn.lock"}


def idx_bytes(shape: tuple[int, ...], body: bytes | None = None) -> bytes:
    """An IDX file of unsigned bytes of `shape` (zeros unless `body` is given)."""
    header = bytes((0, 0, 8, len(shape))) + b"".join(n.to_bytes(4, "big") for n in shape)
    return header + (bytes(int(np.prod(shape))) if body is None else body)


def one_line_error(proc: subprocess.CompletedProcess, *named: object) -> str:
    """The one `error:` line a refused command printed (exit 2), naming each of `named`."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for name in named:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def fake_job(sweep: Path, num: int | str, *, model: str = "arnn", dataset: str = "digits",
             status: str = "completed", lr: float = 0.1, seed: int = 0, steps: int = 100,
             evaluations: list[list[float]] | None = None, **fields: Any) -> Path:
    """A job directory with a hand-written record, as a sweep job leaves it: .hydra/config.yaml
    and a results.json whose accuracies derive from `evaluations` ([step, test, validation])
    unless given as fields; `config` settings beyond these as `settings={"group": {...}}`."""
    from arnn.results import RunResult, evaluation_summary

    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    cfg = {"model": {"name": model, "hidden_size": 16, "eps": 0.1, "gamma": 0.1,
                     "sigma_w": 1.0},
           "dataset": {"name": dataset}, "optimizer": {"name": "sgd", "lr": lr}, "seed": seed}
    for group, values in fields.pop("settings", {}).items():
        cfg[group] = {**cfg.get(group, {}), **values}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    evaluations = evaluations or []
    values = {**evaluation_summary(evaluations), "params": 354, "num_test": 450,
              "num_val": 135 if any(len(e) > 2 for e in evaluations) else None, **fields}
    RunResult(status, model, dataset, "sgd", steps=steps, evaluations=evaluations,
              config=cfg, **values).write(job)
    return job


def job_return(cfg: Any, failure: BaseException | None = None) -> Any:
    """What Hydra's launcher returns for a job: completed with `cfg`, or failed with `failure`."""
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(cfg=cfg)
    ret.status = JobStatus.FAILED if failure is not None else JobStatus.COMPLETED
    ret.return_value = failure if failure is not None else 0.0
    return ret


def interrupt_at(step: int):
    """A loop hook that stops the run at `step` as Ctrl-C would in the middle of a step: no
    checkpoint at that step (the run resumes from the last one)."""
    def hook(loop) -> None:
        if loop.step == step:
            raise KeyboardInterrupt
    return hook


class Payload:
    """Unpickling this runs `touch <marker>`: what a hostile file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def events(run_dir: Path):
    """The TensorBoard events a run directory holds."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def run_config(cfg, run_dir: Path, **options: Any) -> float | None:
    """`arnn.run_dir.run` of a composed config: its specification made first, as the entry
    points make it."""
    from arnn.run_dir import run
    from arnn.spec import RunSpec

    return run(RunSpec.of(cfg), run_dir, **options)


def built(*overrides: str):
    """(spec, parts) of the config `python train.py <overrides>` would run."""
    from arnn.build import build
    from arnn.spec import RunSpec

    spec = RunSpec.of(compose_cfg(*overrides))
    return spec, build(spec)


def make_loop(*overrides: str):
    """A Loop of the config `python train.py <overrides>` would run (no diagnostics)."""
    from arnn.loop import Loop

    spec, parts = built(*overrides)
    return Loop(parts, spec)
