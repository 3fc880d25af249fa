"""Helpers shared by the tests: paths, composing configs, running the CLI, writing files in the
real formats. Test modules import from here (never from each other); pytest fixtures that wrap
these live in conftest.py."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from arnn.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("ARNN_TEST_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Canonical MNIST (gzip IDX files) and the CIFAR-10 JPEG copy, laid beside the checkout on the
# project machines and in CI; elsewhere point ARNN_TEST_MNIST / ARNN_TEST_CIFAR_JPEG at them.
MNIST_DIR = Path(os.environ.get("ARNN_TEST_MNIST", SHARED_DATA / "mnist"))
CIFAR_JPEG_DIR = Path(os.environ.get("ARNN_TEST_CIFAR_JPEG", SHARED_DATA / "cifar10-jpeg"))
# Small runs: the digits with 16 units, batch 32, on the CPU.
SMALL = ("model.hidden_size=16", "train.batch_size=32", "device=cpu")


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
