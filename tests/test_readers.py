"""Readers of files from elsewhere, on real and hand-made files of each format: no code runs from
a data file or a checkpoint, labels within the classes, one line naming the file for what cannot
be used. (Damaged and hostile files of every format: tests/test_fuzz.py.)"""

import errno
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch

from arnn.checkpoint import CHECKPOINT, CheckpointError
from arnn.data.cifar import load_cifar10, read_cifar_batch
from arnn.data.files import DataError
from arnn.data.idx import load_idx_dataset, read_idx
from arnn.results import ResultsError, RunResult
from tests.fixtures import (
    CIFAR_JPEG_DIR,
    SMALL,
    Payload,
    compose_cfg,
    idx_bytes,
    one_line_error,
    read_checkpoint,
    run_cli,
    run_config,
    write_cifar10,
)

SHARED_CIFAR = CIFAR_JPEG_DIR / "make_cifar10.py"


@pytest.mark.slow
def test_hostile_cifar_batch_runs_nothing(tmp_path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    hostile = folder / "data_batch_1"
    hostile.write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": []}, protocol=2))
    proc = run_cli("model=arnn", "dataset=cifar10", f"data_dir={tmp_path}", "train.steps=0",
                   "dataset.download=false", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}")
    line = one_line_error(proc, hostile)
    assert "posix.system" in line and "nothing from it was run" in line
    assert not marker.exists()


class _Python2Pickler(pickle._Pickler):
    """Writes bytes the way Python 2 wrote str (SHORT_BINSTRING / BINSTRING), as in the real
    CIFAR-10 batches that torchvision downloads."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _batch(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"a.png"] * n}


@pytest.mark.parametrize("writer", ["python2", "protocol2", "protocol5"])
def test_real_batch_formats_load(tmp_path, writer):
    batch, path = _batch(), tmp_path / "data_batch_1"
    if writer == "python2":
        buffer = io.BytesIO()
        _Python2Pickler(buffer, protocol=2).dump(batch)
        raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    else:
        raw = pickle.dumps(batch, protocol=int(writer[-1]))
    path.write_bytes(raw)
    images, labels = read_cifar_batch(path)
    assert labels.tolist() == batch[b"labels"]
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2).reshape(3, 3072), batch[b"data"])


@pytest.mark.slow
def test_the_jpeg_copy_written_by_make_cifar10_loads(tmp_path):
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"the CIFAR-10 JPEG copy is not at {SHARED_CIFAR.parent} (set "
                    "ARNN_TEST_CIFAR_JPEG)")
    subprocess.run([sys.executable, str(SHARED_CIFAR), str(tmp_path)], check=True,
                   capture_output=True)
    data = load_cifar10(tmp_path / "cifar-10-batches-py")
    assert data["train_images"].shape == (50000, 32, 32, 3)
    assert np.bincount(data["test_labels"]).tolist() == [1000] * 10


@pytest.mark.parametrize("body", [
    # numpy's reconstruction asked for a huge array up front, or for a subclass
    b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85"
    b"C\x01b\x87R.",
    # a dtype of Python objects
    b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x85R.",
    b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.",
])
def test_refused_globals_and_arguments(tmp_path, body):
    path = tmp_path / "data_batch_1"
    path.write_bytes(body)
    with pytest.raises(DataError, match="refused") as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)


def _wrap_v2(archive: bytes) -> bytes:
    import hashlib

    return f"arnn-checkpoint 2 sha256={hashlib.sha256(archive).hexdigest()}\n".encode() + archive


@pytest.mark.slow
def test_hostile_checkpoint_runs_nothing(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "marker"
    run_config(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    (run_dir / "results.json").unlink()
    buffer = io.BytesIO()
    torch.save({"model": Payload(marker), "step": 1}, buffer)
    ckpt = run_dir / CHECKPOINT
    ckpt.write_bytes(buffer.getvalue())  # a bare torch archive, as version 1 wrote them
    with pytest.raises(CheckpointError, match="version 1"):
        run_config(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    ckpt.write_bytes(_wrap_v2(buffer.getvalue()))  # with a valid digest: still refused
    planted = ckpt.read_bytes()
    proc = run_cli(*SMALL, "train.steps=2", f"hydra.run.dir={run_dir}")
    line = one_line_error(proc, ckpt)
    assert "posix.system" in line and "refused" in line
    assert not marker.exists() and ckpt.read_bytes() == planted


def test_version_1_checkpoints_are_refused_unread(tmp_path):
    """Version 1 (a bare archive) admitted numpy objects for the RNG state; a crafted dtype
    there crashed numpy. It is no longer unpickled at all."""
    run_dir = tmp_path / "run"
    run_config(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    (run_dir / "results.json").unlink()
    state = read_checkpoint(run_dir / CHECKPOINT)
    kind, keys, *rest = state["rng"]["numpy"]
    state["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), *rest)
    torch.save(state, run_dir / CHECKPOINT)  # version 1: a bare archive holding numpy objects
    planted = (run_dir / CHECKPOINT).read_bytes()
    with pytest.raises(CheckpointError, match=r"version 1.*no longer read"):
        run_config(compose_cfg(*SMALL, "train.steps=4"), run_dir)
    assert (run_dir / CHECKPOINT).read_bytes() == planted


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_2_31_images_fails_fast_without_allocating(tmp_path, gz):
    body = bytes((0, 0, 8, 3)) + (2**31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    body += bytes(28 * 28 * 3)
    path = tmp_path / ("huge.gz" if gz else "huge")
    path.write_bytes(gzip.compress(body) if gz else body)
    tracemalloc.start()
    start = time.process_time()  # work done, whatever else the machine is doing
    with pytest.raises(DataError, match=r"announces 2147483648 items") as info:
        read_idx(path, 3)
    work = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert work < 1.0 and peak < 50 << 20 and str(path) in str(info.value)


@pytest.mark.slow
def test_directories_and_unreadable_files(tmp_path, monkeypatch):
    run_config(compose_cfg(*SMALL, "train.steps=2"), tmp_path / "run")
    ckpt, results = tmp_path / "run" / CHECKPOINT, tmp_path / "run" / "results.json"
    mnist, cifar = tmp_path / "mnist", tmp_path / "cifar"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte").mkdir()
    write_cifar10(cifar)
    batch = cifar / "cifar-10-batches-py" / "data_batch_2"
    batch.unlink()
    batch.mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not a regular file"):
        run_config(compose_cfg(*SMALL, "dataset=mnist", f"data_dir={mnist}"), tmp_path / "a")
    with pytest.raises(DataError, match="data_batch_2: not a regular file"):
        run_config(compose_cfg(*SMALL, "dataset=cifar10", f"data_dir={cifar}"), tmp_path / "b")
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(tmp_path / "run")  # a directory
    # Permission denied (chmod does not deny root, so the denial is simulated at open).
    real_open = os.open
    (cifar / "cifar-10-batches-py" / "x").write_bytes(b"")

    def deny(file, *args, **kwargs):
        if str(file) in (str(ckpt), str(results), str(cifar / "cifar-10-batches-py" / "x")):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(CheckpointError, match="Permission denied"):
        read_checkpoint(ckpt)
    with pytest.raises(ResultsError, match="Permission denied"):
        RunResult.read(tmp_path / "run")
    with pytest.raises(DataError, match="Permission denied"):
        read_cifar_batch(cifar / "cifar-10-batches-py" / "x")


@pytest.mark.slow
def test_damaged_files_end_in_one_line_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    run_config(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    results = run_dir / "results.json"
    results.write_text('{"status": "completed"')
    proc = run_cli(*SMALL, "train.steps=2", f"hydra.run.dir={run_dir}")
    assert "not JSON" in one_line_error(proc, results)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (mnist / name).write_bytes(b"\x00\x00\x08\x03" + b"\xff" * 12)
    proc = run_cli(*SMALL, "dataset=mnist", f"data_dir={mnist}", f"hydra.run.dir={tmp_path / 'm'}")
    one_line_error(proc, mnist / "train-images-idx3-ubyte")



def test_idx_magic_numbers_are_checked(tmp_path):
    data = idx_bytes((2, 28, 28))
    for magic in (b"\x00\x00\x09\x03", b"\x1f\x8b\x08\x00", b"PK\x03\x04"):
        path = tmp_path / "magic"
        path.write_bytes(magic + data[4:])
        with pytest.raises(DataError, match="not an IDX file"):
            read_idx(path, 3)


def test_idx_labels_beyond_the_classes_name_the_file(tmp_path):
    """A label of 200 is the file's fault, said with its name (not a num_classes error)."""
    files = {}
    for split, n in (("train", 3), ("test", 2)):
        files[f"{split}_images"] = tmp_path / f"{split}-images"
        files[f"{split}_images"].write_bytes(idx_bytes((n, 28, 28)))
        files[f"{split}_labels"] = tmp_path / f"{split}-labels"
        files[f"{split}_labels"].write_bytes(idx_bytes((n,), bytes([1, 200, 3][:n])))
    with pytest.raises(DataError, match=r"train-labels: label 200 outside 0..9 "
                                        r"\(dataset.num_classes=10\)"):
        load_idx_dataset(files, (28, 28), 10)
    assert load_idx_dataset(files, (28, 28), 201)["train_labels"].tolist() == [1, 200, 3]
