import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU the triton backend runs in Triton's interpreter (numpy on the CPU). The variable
# is read when the kernels are defined, so it is set before anything imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from arnn.cli import compose_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Canonical MNIST (gzip IDX files), laid beside the checkout on the project machines and in CI.
MNIST_DIR = Path(os.environ.get("ARNN_TEST_MNIST", ROOT.parent / "shared" / "data" / "mnist"))


def compose_cfg(*overrides: str, return_hydra_config: bool = False):
    """The config `python train.py <overrides>` would run, composed through Hydra."""
    return compose_config(list(overrides), CONF, return_hydra_config)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """`python train.py <args>` in a subprocess, as a user would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"canonical MNIST files are expected in {MNIST_DIR}")
    return MNIST_DIR
