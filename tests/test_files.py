"""Files from elsewhere: no code runs from a data file or a checkpoint, every reader fuzzed, one
writer per run directory, failing writes leave the previous file whole."""

import errno
import gzip
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from arnn import storage
from arnn.checkpoint import CHECKPOINT, CheckpointError, save_atomic
from arnn.data.files import DataError, load_cifar10, read_cifar_batch, read_idx
from arnn.results import ResultsError, RunResult
from arnn.run_dir import run
from arnn.storage import RunDirBusy, RunDirLock, WriteError, write_atomic
from tests.fixtures import (
    CIFAR_JPEG_DIR,
    ROOT,
    SMALL,
    compose_cfg,
    read_checkpoint,
    run_cli,
    run_cli_patched,
    write_cifar10,
)
from tests.fuzz import mutations

SHARED_CIFAR = CIFAR_JPEG_DIR / "make_cifar10.py"



def _load(path: Path) -> dict:
    return read_checkpoint(path)


class Payload:
    """Unpickling this runs `touch <marker>`: what a hostile file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_error(proc, path) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in lines[0]
    return lines[0]


# --- CIFAR-10 batches: a restricted unpickler ------------------------------------------------

@pytest.mark.slow
def test_hostile_cifar_batch_runs_nothing(tmp_path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    hostile = folder / "data_batch_1"
    hostile.write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": []}, protocol=2))
    proc = run_cli("model=arnn", "dataset=cifar10", f"data_dir={tmp_path}", "train.steps=0",
                   "dataset.download=false", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}")
    line = _one_line_error(proc, hostile)
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


# --- checkpoints: weights-only, with a digest -------------------------------------------------

def _wrap_v2(archive: bytes) -> bytes:
    import hashlib

    return f"arnn-checkpoint 2 sha256={hashlib.sha256(archive).hexdigest()}\n".encode() + archive


@pytest.mark.slow
def test_hostile_checkpoint_runs_nothing(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "marker"
    run(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    (run_dir / "results.json").unlink()
    buffer = io.BytesIO()
    torch.save({"model": Payload(marker), "step": 1}, buffer)
    ckpt = run_dir / CHECKPOINT
    ckpt.write_bytes(buffer.getvalue())  # a bare torch archive, as version 1 wrote them
    with pytest.raises(CheckpointError, match="version 1"):
        run(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    ckpt.write_bytes(_wrap_v2(buffer.getvalue()))  # with a valid digest: still refused
    planted = ckpt.read_bytes()
    proc = run_cli(*SMALL, "train.steps=2", f"hydra.run.dir={run_dir}")
    line = _one_line_error(proc, ckpt)
    assert "posix.system" in line and "refused" in line
    assert not marker.exists() and ckpt.read_bytes() == planted


def test_version_1_checkpoints_are_refused_unread(tmp_path):
    """Version 1 (a bare archive) admitted numpy objects for the RNG state; a crafted dtype
    there crashed numpy. It is no longer unpickled at all."""
    run_dir = tmp_path / "run"
    run(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    (run_dir / "results.json").unlink()
    state = _load(run_dir / CHECKPOINT)
    kind, keys, *rest = state["rng"]["numpy"]
    state["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), *rest)
    torch.save(state, run_dir / CHECKPOINT)  # version 1: a bare archive holding numpy objects
    planted = (run_dir / CHECKPOINT).read_bytes()
    with pytest.raises(CheckpointError, match=r"version 1.*no longer read"):
        run(compose_cfg(*SMALL, "train.steps=4"), run_dir)
    assert (run_dir / CHECKPOINT).read_bytes() == planted


# --- fuzzing every reader ---------------------------------------------------------------------

def _idx_bytes(images: np.ndarray) -> bytes:
    header = bytes((0, 0, 8, images.ndim)) + b"".join(
        n.to_bytes(4, "big") for n in images.shape)
    return header + images.tobytes()


def _mutations(data: bytes):
    return mutations(data, seed=0, flips=40, random_cuts=15)


def _fuzz(tmp_path, name, data, read, error, valid, gz=False):
    """Every mutation of `data` either reads as a valid result or raises `error` naming the
    file in one line; nothing else escapes."""
    refused = 0
    for label, mutated in _mutations(data):
        path = tmp_path / f"{label}-{name}"
        path.write_bytes(gzip.compress(mutated) if gz else mutated)
        try:
            result = read(path)
        except error as e:
            assert str(path) in str(e) and "\n" not in str(e), str(e)
            refused += 1
        else:
            valid(result)
    return refused


def test_fuzz_idx_reader(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    data = _idx_bytes(images)
    for gz in (False, True):
        refused = _fuzz(tmp_path, f"images{gz}", data, lambda p: read_idx(p, 3), DataError,
                        lambda a: a.ndim == 3, gz=gz)
        assert refused >= 15  # every truncation at least
    for magic in (b"\x00\x00\x09\x03", b"\x1f\x8b\x08\x00", b"PK\x03\x04"):
        path = tmp_path / "magic"
        path.write_bytes(magic + data[4:])
        with pytest.raises(DataError, match="not an IDX file"):
            read_idx(path, 3)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_2_31_images_fails_fast_without_allocating(tmp_path, gz):
    body = bytes((0, 0, 8, 3)) + (2**31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    body += bytes(28 * 28 * 3)
    path = tmp_path / ("huge.gz" if gz else "huge")
    path.write_bytes(gzip.compress(body) if gz else body)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"announces 2147483648 items") as info:
        read_idx(path, 3)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 50 << 20 and str(path) in str(info.value)


def test_fuzz_cifar_reader(tmp_path):
    data = pickle.dumps(_batch(), protocol=2)
    _fuzz(tmp_path, "batch", data, read_cifar_batch, DataError,
          lambda r: r[0].shape[1:] == (32, 32, 3) and len(r[0]) == len(r[1]))


def test_fuzz_checkpoint_loader(tmp_path):
    run(compose_cfg(*SMALL, "train.steps=2"), tmp_path / "run")
    data = (tmp_path / "run" / CHECKPOINT).read_bytes()
    # The digest catches every change: nothing altered ever loads.
    refused = _fuzz(tmp_path, "last.pt", data, _load, CheckpointError,
                    lambda s: pytest.fail("an altered checkpoint loaded"))
    assert refused == len(list(_mutations(data)))


def test_fuzz_results_reader(tmp_path):
    run(compose_cfg(*SMALL, "train.steps=2"), tmp_path / "run")
    data = (tmp_path / "run" / "results.json").read_bytes()

    def read(path):
        folder = tmp_path / f"dir-{path.name}"
        folder.mkdir()
        path.rename(folder / "results.json")
        try:
            return RunResult.read(folder)
        except ResultsError as e:
            raise ResultsError(f"{path}: {e}") from None  # name the fuzz case

    _fuzz(tmp_path, "results.json", data, read, ResultsError,
          lambda r: r.status in ("running", "completed", "diverged", "failed"))
    for bad in (b"[]", b'{"status": "done"}', b'{"status": "completed", "config": 3}', b""):
        (tmp_path / "run" / "results.json").write_bytes(bad)
        with pytest.raises(ResultsError, match="results.json"):
            RunResult.read(tmp_path / "run")


@pytest.mark.slow
def test_directories_and_unreadable_files(tmp_path, monkeypatch):
    run(compose_cfg(*SMALL, "train.steps=2"), tmp_path / "run")
    ckpt, results = tmp_path / "run" / CHECKPOINT, tmp_path / "run" / "results.json"
    mnist, cifar = tmp_path / "mnist", tmp_path / "cifar"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte").mkdir()
    write_cifar10(cifar)
    batch = cifar / "cifar-10-batches-py" / "data_batch_2"
    batch.unlink()
    batch.mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not a regular file"):
        run(compose_cfg(*SMALL, "dataset=mnist", f"data_dir={mnist}"), tmp_path / "a")
    with pytest.raises(DataError, match="data_batch_2: not a regular file"):
        run(compose_cfg(*SMALL, "dataset=cifar10", f"data_dir={cifar}"), tmp_path / "b")
    with pytest.raises(CheckpointError, match="not a regular file"):
        _load(tmp_path / "run")  # a directory
    # Permission denied (chmod does not deny root, so the denial is simulated at open).
    real_open = os.open
    (cifar / "cifar-10-batches-py" / "x").write_bytes(b"")

    def deny(file, *args, **kwargs):
        if str(file) in (str(ckpt), str(results), str(cifar / "cifar-10-batches-py" / "x")):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(CheckpointError, match="Permission denied"):
        _load(ckpt)
    with pytest.raises(ResultsError, match="Permission denied"):
        RunResult.read(tmp_path / "run")
    with pytest.raises(DataError, match="Permission denied"):
        read_cifar_batch(cifar / "cifar-10-batches-py" / "x")


@pytest.mark.slow
def test_damaged_files_end_in_one_line_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    run(compose_cfg(*SMALL, "train.steps=2"), run_dir)
    results = run_dir / "results.json"
    results.write_text('{"status": "completed"')
    proc = run_cli(*SMALL, "train.steps=2", f"hydra.run.dir={run_dir}")
    assert "not JSON" in _one_line_error(proc, results)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (mnist / name).write_bytes(b"\x00\x00\x08\x03" + b"\xff" * 12)
    proc = run_cli(*SMALL, "dataset=mnist", f"data_dir={mnist}", f"hydra.run.dir={tmp_path / 'm'}")
    _one_line_error(proc, mnist / "train-images-idx3-ubyte")


# --- one writer per run directory -------------------------------------------------------------

def test_a_held_directory_is_refused_and_left_unchanged(tmp_path):
    run(compose_cfg(*SMALL, "train.steps=2"), tmp_path)
    (tmp_path / "results.json").unlink()  # as if interrupted: the next start would resume
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != ".arnn.lock"}
    with RunDirLock(tmp_path):
        with pytest.raises(RunDirBusy, match=rf"{tmp_path} is in use by pid {os.getpid()} on "):
            run(compose_cfg(*SMALL, "train.steps=2"), tmp_path)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != ".arnn.lock"}
    assert before == after
    run(compose_cfg(*SMALL, "train.steps=2"), tmp_path)  # released: it resumes
    assert RunResult.read(tmp_path).status == "completed"


@pytest.mark.slow
def test_second_process_stops_and_kill_9_releases_the_directory(tmp_path):
    args = (*SMALL, "train.steps=1500", "train.checkpoint_every=25", "train.eval_every=1500",
            f"hydra.run.dir={tmp_path}")
    first = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / CHECKPOINT).exists() and time.time() < deadline:
            time.sleep(0.1)
        record = (tmp_path / ".hydra" / "config.yaml").read_text()
        start = time.perf_counter()
        second = run_cli(*args, "seed=1")  # even another config: refused before anything
        elapsed = time.perf_counter() - start
        line = _one_line_error(second, tmp_path)
        assert f"pid {first.pid} on " in line and elapsed < 30
        assert first.poll() is None  # the holder trains on
        assert (tmp_path / ".hydra" / "config.yaml").read_text() == record
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    resumed = run_cli(*args)  # the kernel released the lock with the process
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in (tmp_path / "train.log").read_text()
    assert RunResult.read(tmp_path).status == "completed"


@pytest.mark.slow
def test_a_busy_job_fails_alone_in_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "1").mkdir(parents=True)
    with RunDirLock(sweep / "1"):
        proc = run_cli("-m", *SMALL, "model.eps=0.05,0.1", "train.steps=5",
                       f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0 and "is in use by pid" in proc.stderr
    assert RunResult.read(sweep / "0").status == "completed"
    assert not (sweep / "1" / "results.json").exists()


# --- failing writes ---------------------------------------------------------------------------

def _fail_fsync_after(monkeypatch, calls: int, only: str = ""):
    count = {"n": 0}
    real = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if only in name:
            count["n"] += 1
            if count["n"] > calls:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync)


def test_a_failing_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    _fail_fsync_after(monkeypatch, 1, only="last.pt")
    with pytest.raises(WriteError, match=r"last.pt: No space left on device \(errno 28\)"):
        run(compose_cfg(*SMALL, "train.steps=6", "train.checkpoint_every=2"), tmp_path)
    assert _load(tmp_path / CHECKPOINT)["step"] == 2  # the previous one, whole
    result = RunResult.read(tmp_path)
    assert result.status == "failed" and "No space left on device" in result.error
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failing_results_write_keeps_the_previous_one(tmp_path, monkeypatch):
    _fail_fsync_after(monkeypatch, 1, only="results.json")  # 'running' is written, then none
    with pytest.raises(WriteError, match="results.json: No space left"):
        run(compose_cfg(*SMALL, "train.steps=2"), tmp_path)
    assert RunResult.read(tmp_path).status == "running"
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_failing_write_from_the_command_line_is_one_line(tmp_path):
    proc = run_cli_patched(
        "import errno; from arnn import storage\n"
        "def fsync(fd): raise OSError(errno.EIO, 'Input/output error')\n"
        "storage.os.fsync = fsync\n",
        *SMALL, "train.steps=2", f"hydra.run.dir={tmp_path}")
    line = _one_line_error(proc, tmp_path / ".hydra" / "config.yaml")
    assert "Input/output error (errno 5)" in line


def test_temporary_names_are_unique_per_writer(tmp_path, monkeypatch):
    names = []
    real = os.replace
    monkeypatch.setattr(storage.os, "replace", lambda a, b: (names.append(a), real(a, b)))
    write_atomic(tmp_path / "f", b"1")
    write_atomic(tmp_path / "f", b"2")
    assert len(set(names)) == 2 and (tmp_path / "f").read_bytes() == b"2"
    state = {"model": {}, "step": 0, "fingerprint": {}}
    save_atomic(state, tmp_path / "c.pt")
    assert _load(tmp_path / "c.pt") == state
