import os
from pathlib import Path

import pytest
import torch

# Without a GPU the triton backend runs in Triton's interpreter (numpy on the CPU). The variable
# is read when the kernels are defined, so it is set before anything imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.fixtures import MNIST_DIR, write_cifar10  # noqa: E402


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"canonical MNIST files are expected in {MNIST_DIR} (set ARNN_TEST_MNIST)")
    return MNIST_DIR


@pytest.fixture()
def cifar_root(tmp_path: Path) -> Path:
    """A small CIFAR-10 in the real pickle format under tmp_path."""
    write_cifar10(tmp_path)
    return tmp_path
