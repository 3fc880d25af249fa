"""What a run writes: only inside its own directory and never through a link, with one file
mode, no temporary file left behind; and a run refused for a damaged input leaves every record
it found as it was, byte for byte."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from arnn import storage
from arnn.checkpoint import CHECKPOINT, save_atomic
from arnn.errors import UserError, one_line
from arnn.inplace import LOCK_FILE, SWEEP_LOCK_FILE, DirLock, RunDirBusy, RunLogHandler
from arnn.results import RunResult
from arnn.storage import Folder, UnsafeRunDir, WriteError, write_atomic
from tests.fixtures import (
    ROOT,
    SMALL,
    compose_cfg,
    fake_job,
    files_under,
    one_line_error,
    read_checkpoint,
    run_cli,
    run_cli_patched,
    run_config,
    write_cifar10,
)
from tests.fuzz import in_child

ARGS = (*SMALL, "train.steps=2")
PMNIST = ("dataset=pmnist", "dataset.train_limit=64", "dataset.test_limit=50")


@pytest.fixture(scope="module")
def written(tmp_path_factory, mnist_dir) -> dict[Path, bool]:
    """Every file and folder (True) a pMNIST run writes (it writes permutation.json too),
    relative to its run directory."""
    run_dir = tmp_path_factory.mktemp("walk") / "run"
    proc = run_cli(*ARGS, *PMNIST, f"data_dir={mnist_dir}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.relative_to(run_dir): p.is_dir() for p in sorted(run_dir.rglob("*"))}


def test_the_walk_covers_every_kind_of_file(written):
    names = {str(p) for p in written}
    assert {LOCK_FILE, ".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml",
            ".hydra/overrides.yaml", "checkpoints", str(CHECKPOINT), "results.json",
            "train.log", "permutation.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)


def test_a_link_in_place_of_any_file_a_run_writes_is_refused(tmp_path, written):
    """For each path a run writes, a run directory where that path is a link to a file or
    folder outside: refused in one line naming the link, the target untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("precious\n")
    for k, (relative, is_dir) in enumerate(written.items()):
        run_dir = tmp_path / f"run{k}"
        link = run_dir / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside if is_dir else outside / "file")
        with pytest.raises(UnsafeRunDir, match="is a symbolic link") as info:
            run_config(compose_cfg(*ARGS, *PMNIST), run_dir)
        assert str(link) in str(info.value) and "\n" not in str(info.value)
        assert sorted(outside.iterdir()) == [outside / "file"]
        assert (outside / "file").read_text() == "precious\n"


def test_a_linked_lock_from_the_command_line(tmp_path):
    """The reproduction of the issue: `ln -s /some/file run/.arnn.lock`, then a run."""
    target, run_dir = tmp_path / "some-file", tmp_path / "run"
    target.write_text("precious\n")
    run_dir.mkdir()
    (run_dir / LOCK_FILE).symlink_to(target)
    one_line_error(run_cli(*ARGS, f"hydra.run.dir={run_dir}"), run_dir / LOCK_FILE)
    assert target.read_text() == "precious\n"


def test_a_linked_job_log_from_the_command_line(tmp_path):
    """train.log is opened by Hydra's logging before the run starts: never through a link."""
    target, run_dir = tmp_path / "some-file", tmp_path / "run"
    target.write_text("precious\n")
    run_dir.mkdir()
    (run_dir / "train.log").symlink_to(target)
    one_line_error(run_cli(*ARGS, f"hydra.run.dir={run_dir}"), run_dir / "train.log")
    assert target.read_text() == "precious\n"


def test_the_lock_and_the_log_never_open_through_a_link(tmp_path):
    """Beyond the check at the start: a link planted after it is still not followed."""
    target = tmp_path / "some-file"
    target.write_text("precious\n")
    (tmp_path / LOCK_FILE).symlink_to(target)
    with pytest.raises(UnsafeRunDir, match="is a symbolic link"):
        DirLock(tmp_path).__enter__()
    handler = RunLogHandler(str(tmp_path / "train.log"))
    (tmp_path / "train.log").symlink_to(target)
    handler.emit(logging.makeLogRecord({"msg": "a line"}))
    handler.close()
    assert target.read_text() == "precious\n"


def test_a_run_directory_that_is_a_link_is_allowed(tmp_path):
    """Linking a whole run directory to scratch space is how clusters are used."""
    (tmp_path / "scratch").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "scratch")
    run_config(compose_cfg(*ARGS), tmp_path / "run")
    assert RunResult.read(tmp_path / "scratch").status == "completed"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_of_a_run_has_one_mode(tmp_path, umask, mnist_dir):
    cfg = compose_cfg(*ARGS, *PMNIST, f"data_dir={mnist_dir}")

    def train() -> None:
        os.umask(umask)
        run_config(cfg, tmp_path / "run")

    assert in_child(train).code == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").rglob("*")
             if p.is_file()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_a_kill_during_a_checkpoint_write_leaves_no_temporary_file_after_the_resume(tmp_path):
    """The child is killed (SIGKILL) between writing a checkpoint's temporary file and the
    rename; the run that resumes the directory removes what it left."""
    def killed_while_writing() -> None:
        real, calls = os.replace, []

        def replace(src, dst, **dir_fds):
            if str(dst).endswith("last.pt"):
                calls.append(dst)
                if len(calls) == 2:  # the checkpoint at step 4: its temporary file is written
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, **dir_fds)

        storage.os.replace = replace
        run_config(compose_cfg(*SMALL, "train.steps=6", "train.checkpoint_every=2"),
                   tmp_path / "run")

    outcome = in_child(killed_while_writing)
    assert outcome.signal == signal.SIGKILL
    left = list((tmp_path / "run").rglob("*.tmp"))
    assert [p.name.startswith(".last.pt.") for p in left] == [True]
    run_config(compose_cfg(*SMALL, "train.steps=6", "train.checkpoint_every=2"), tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.tmp"))
    assert RunResult.read(tmp_path / "run").status == "completed"


# --- a refused run leaves the finished record as it was ---------------------------------------

def test_a_truncated_checkpoint_under_a_completed_run(tmp_path):
    """The issue's reproduction: extend a completed digits run whose last.pt is truncated."""
    run_dir = tmp_path / "run"
    assert run_cli(*SMALL, "train.steps=20", f"hydra.run.dir={run_dir}").returncode == 0
    ckpt = run_dir / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:-1000])
    before = files_under(run_dir)
    line = one_line_error(run_cli(*SMALL, "train.steps=40", f"hydra.run.dir={run_dir}"), ckpt)
    assert "corrupt or truncated" in line
    after = files_under(run_dir)
    log = after.pop(run_dir / "train.log")
    assert after == {k: v for k, v in before.items() if k.name != "train.log"}
    assert log.endswith(f"refused: {line.removeprefix('error: ')}\n".encode())
    assert RunResult.read(run_dir).status == "completed"


@pytest.mark.slow
def test_a_truncated_mnist_file_under_a_completed_run(tmp_path, mnist_dir):
    data, run_dir = tmp_path / "mnist", tmp_path / "run"
    shutil.copytree(mnist_dir, data)
    args = (*SMALL, "dataset=mnist", f"data_dir={data}", "dataset.train_limit=256",
            "dataset.test_limit=100", "model.hidden_size=8", f"hydra.run.dir={run_dir}")
    assert run_cli(*args, "train.steps=2").returncode == 0
    damaged = data / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    before = files_under(run_dir)
    one_line_error(run_cli(*args, "train.steps=4"), damaged)
    after = files_under(run_dir)
    assert {k: v for k, v in after.items() if k.name != "train.log"} == {
        k: v for k, v in before.items() if k.name != "train.log"}


def test_a_damaged_batch_in_a_new_directory_is_recorded_as_failed(tmp_path):
    """With no record to keep, a refused run leaves one, so that a sweep lists the job."""
    data = tmp_path / "data"
    write_cifar10(data)
    batch = data / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(b"\x80\x02N.")
    with pytest.raises(UserError, match="test_batch"):
        run_config(compose_cfg(*ARGS, "dataset=cifar10", f"data_dir={data}"), tmp_path / "run")
    result = RunResult.read(tmp_path / "run")
    assert result.status == "failed" and "test_batch" in result.error


# --- the file system says no ------------------------------------------------------------------

@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EDQUOT])
def test_a_file_system_that_refuses_writes_is_one_line(tmp_path, monkeypatch, error):
    """Read-only, out of inodes or space, an immutable directory: creating a temporary file
    fails inside the error handling, the lock's open too."""
    real_open = os.open

    def refuse_temporaries(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(error, os.strerror(error))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(storage.os, "open", refuse_temporaries)
    with pytest.raises(WriteError, match=os.strerror(error)):
        run_config(compose_cfg(*ARGS), tmp_path / "run")
    monkeypatch.setattr(storage.os, "open", real_open)

    def refuse_the_lock(path, *args, **kwargs):
        if str(path).endswith(LOCK_FILE):
            raise OSError(error, os.strerror(error))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(storage.os, "open", refuse_the_lock)
    with pytest.raises(UnsafeRunDir, match=os.strerror(error)):
        run_config(compose_cfg(*ARGS), tmp_path / "other")


def test_a_lock_that_is_a_directory_from_the_command_line(tmp_path):
    (tmp_path / "run" / LOCK_FILE).mkdir(parents=True)
    one_line_error(run_cli(*ARGS, f"hydra.run.dir={tmp_path / 'run'}"), LOCK_FILE)


def test_an_os_error_anywhere_in_a_run_is_one_line_from_the_command_line(tmp_path):
    """A file system error the run does not expect (here, TensorBoard's event file) still
    ends in one line naming the file, exit 2."""
    proc = run_cli_patched(
        "import errno; from torch.utils.tensorboard import SummaryWriter\n"
        "def refuse(*a, **k): raise OSError(errno.EROFS, 'Read-only file system', 'events.x')\n"
        "SummaryWriter.__init__ = refuse\n",
        *ARGS, f"hydra.run.dir={tmp_path / 'run'}")
    one_line_error(proc, "events.x", "Read-only file system")


# --- error lines ------------------------------------------------------------------------------

def test_error_lines_are_printable_and_bounded():
    message = "bad \x1b[2J\x1b[31mname\x07\n" + "x" * (50 << 20)
    line = one_line(UserError(message))
    assert line.isprintable() and len(line) < 1100
    assert "\\x1b[2J" in line and line.endswith(f"({len(message)} characters in all)")


def test_a_record_with_escape_sequences_is_reported_printably(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"status": "\\u001b[2Jdone"}')
    one_line_error(run_cli(*ARGS, f"hydra.run.dir={run_dir}"), "\\x1b[2Jdone")


def test_temporary_files_of_another_name_are_left_alone(tmp_path):
    run_config(compose_cfg(*ARGS), tmp_path)
    mine = Path(tempfile.mkstemp(dir=tmp_path, prefix="notes", suffix=".tmp")[1])
    run_config(compose_cfg(*SMALL, "train.steps=3"), tmp_path)
    assert mine.exists()


# --- one writer per run directory; failing writes ----------------------------------------------


def test_a_held_directory_is_refused_and_left_unchanged(tmp_path):
    run_config(compose_cfg(*SMALL, "train.steps=2"), tmp_path)
    (tmp_path / "results.json").unlink()  # as if interrupted: the next start would resume
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != ".arnn.lock"}
    with DirLock(tmp_path):
        with pytest.raises(RunDirBusy, match=rf"{tmp_path} is in use by pid {os.getpid()} on "):
            run_config(compose_cfg(*SMALL, "train.steps=2"), tmp_path)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != ".arnn.lock"}
    assert before == after
    run_config(compose_cfg(*SMALL, "train.steps=2"), tmp_path)  # released: it resumes
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
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # mid-training however fast it trains, lock held
        record = (tmp_path / ".hydra" / "config.yaml").read_text()
        start = time.perf_counter()
        second = run_cli(*args, "seed=1")  # even another config: refused before anything
        elapsed = time.perf_counter() - start
        line = one_line_error(second, tmp_path)
        assert f"pid {first.pid} on " in line and elapsed < 30
        assert first.poll() is None  # the holder is untouched
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
    with DirLock(sweep / "1"):
        proc = run_cli("-m", *SMALL, "model.eps=0.05,0.1", "train.steps=5",
                       f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0 and "is in use by pid" in proc.stderr
    assert RunResult.read(sweep / "0").status == "completed"
    assert not (sweep / "1" / "results.json").exists()


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
        run_config(compose_cfg(*SMALL, "train.steps=6", "train.checkpoint_every=2"), tmp_path)
    assert read_checkpoint(tmp_path / CHECKPOINT)["step"] == 2  # the previous one, whole
    result = RunResult.read(tmp_path)
    assert result.status == "failed" and "No space left on device" in result.error
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failing_results_write_keeps_the_previous_one(tmp_path, monkeypatch):
    _fail_fsync_after(monkeypatch, 1, only="results.json")  # 'running' is written, then none
    with pytest.raises(WriteError, match="results.json: No space left"):
        run_config(compose_cfg(*SMALL, "train.steps=2"), tmp_path)
    assert RunResult.read(tmp_path).status == "running"
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_failing_write_from_the_command_line_is_one_line(tmp_path):
    proc = run_cli_patched(
        "import errno; from arnn import storage\n"
        "def fsync(fd): raise OSError(errno.EIO, 'Input/output error')\n"
        "storage.os.fsync = fsync\n",
        *SMALL, "train.steps=2", f"hydra.run.dir={tmp_path}")
    line = one_line_error(proc, tmp_path / ".hydra" / "config.yaml")
    assert "Input/output error (errno 5)" in line


def test_temporary_names_are_unique_per_writer(tmp_path, monkeypatch):
    names = []
    real = os.replace
    monkeypatch.setattr(storage.os, "replace",
                        lambda a, b, **fds: (names.append(a), real(a, b, **fds)))
    write_atomic(tmp_path / "f", b"1")
    write_atomic(tmp_path / "f", b"2")
    assert len(set(names)) == 2 and (tmp_path / "f").read_bytes() == b"2"
    state = {"model": {}, "step": 0, "fingerprint": {}}
    with Folder(tmp_path) as folder:
        save_atomic(state, folder, "c.pt")
    assert read_checkpoint(tmp_path / "c.pt") == state



# --- never delete what the run did not create -------------------------------------------------

def test_a_refused_run_leaves_a_directory_it_did_not_create_byte_for_byte(tmp_path):
    """The issue's reproduction: a folder of another Hydra application (a `*.log` directory
    and a `.hydra/`), refused for a bad value: every byte stays, nothing is added."""
    folder = tmp_path / "D"
    (folder / "archive.log").mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "archive.log" / "data.bin").write_bytes(b"data\n")
    (folder / ".hydra" / "config.yaml").write_text("theirs: 1\n")
    before = files_under(folder), sorted(p.name for p in folder.rglob("*"))
    one_line_error(run_cli("model.eps=0", f"hydra.run.dir={folder}"), "model.eps=0.0")
    assert (files_under(folder), sorted(p.name for p in folder.rglob("*"))) == before


@pytest.mark.slow
def test_a_refused_run_never_removes_a_held_lock(tmp_path):
    """One process holds the run directory; another is refused for a bad value: the lock
    stays, and stays held (a third run is told the directory is in use)."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from arnn.inplace import DirLock\n"
         f"with DirLock({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(3600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_error(run_cli("model.eps=0", f"hydra.run.dir={run_dir}"), "model.eps=0.0")
        assert f"pid {holder.pid}" in (run_dir / LOCK_FILE).read_text()
        busy = one_line_error(run_cli(*ARGS, f"hydra.run.dir={run_dir}"), run_dir)
        assert f"is in use by pid {holder.pid}" in busy
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", [LOCK_FILE, "train.log", "results.json"])
def test_a_hard_link_in_a_run_directory_is_refused(tmp_path, name):
    """A file of the run directory that has another name: refused before anything is written,
    the other name untouched (the lock would be truncated, the log appended to)."""
    outside, run_dir = tmp_path / "precious", tmp_path / "run"
    outside.write_text("precious\n")
    run_dir.mkdir()
    os.link(outside, run_dir / name)
    line = one_line_error(run_cli(*ARGS, f"hydra.run.dir={run_dir}"), run_dir / name)
    assert "hard link" in line and outside.read_text() == "precious\n"


def _swapped_at(step: int, path: Path, target: Path):
    """A hook that, at `step`, moves `path` aside and puts a link to `target` in its place."""
    def hook(loop) -> None:
        if loop.step == step:
            path.rename(path.with_name(path.name + ".moved"))
            path.symlink_to(target, target_is_directory=True)
    return hook


@pytest.mark.parametrize("swapped", ["checkpoints", "."])
def test_a_link_swapped_in_while_a_run_trains_gets_no_byte(tmp_path, swapped):
    """checkpoints/, or the run directory itself, replaced by a link to another folder at step
    3: the checkpoints, results.json and events of steps 4-8 go to the directory the run holds,
    none to the link's target."""
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "run"
    path = run_dir if swapped == "." else run_dir / swapped
    args = (*SMALL, "train.steps=8", "train.checkpoint_every=2", "train.eval_every=4")
    run_config(compose_cfg(*args), run_dir, hooks=[_swapped_at(3, path, outside)])
    assert list(outside.iterdir()) == []
    held = path.with_name(path.name + ".moved")  # where the run's directory went
    result = RunResult.read(held if swapped == "." else run_dir)
    assert result.status == "completed" and result.steps == 8
    last = held / "last.pt" if swapped == "checkpoints" else held / CHECKPOINT
    assert read_checkpoint(last)["step"] == 8


def test_the_collectors_files_are_never_written_through_a_link(tmp_path):
    from arnn.collect import main as collect_main

    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, evaluations=[[100, 0.5, 0.6]])
    outside = tmp_path / "outside.md"
    outside.write_text("precious\n")
    (sweep / "results.md").symlink_to(outside)
    os.link(outside, sweep / "results.csv")
    collect_main([str(sweep)])
    assert outside.read_text() == "precious\n"
    assert not (sweep / "results.md").is_symlink() and "Best configuration" in (
        sweep / "results.md").read_text()


def test_the_collector_out_naming_a_file_is_one_line(tmp_path, capsys):
    from arnn.collect import main as collect_main

    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, evaluations=[[100, 0.5, 0.6]])
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit) as info:
        collect_main([str(sweep), "--out", str(tmp_path / "a-file")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "a-file is not a directory" in err[0]


def test_a_full_disk_at_the_job_logs_first_line_is_no_traceback(tmp_path, capsys):
    handler = RunLogHandler(str(tmp_path / "train.log"))

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    handler.stream = Full()
    handler.emit(logging.makeLogRecord({"msg": "a line"}))
    assert "Traceback" not in capsys.readouterr().err


def test_a_run_directory_inside_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("x")
    line = one_line_error(run_cli(*ARGS, f"hydra.run.dir={tmp_path / 'a-file' / 'run'}"))
    assert "is a file, not a directory" in line


@pytest.mark.slow
@pytest.mark.parametrize("sweeper", ["grid", "halving"])
def test_multirun_yaml_is_never_written_through_a_link(tmp_path, sweeper):
    sweep, outside = tmp_path / "sweep", tmp_path / "outside"
    sweep.mkdir()
    outside.write_text("precious\n")
    (sweep / "multirun.yaml").symlink_to(outside)
    extra = ["hydra/sweeper=halving", "hydra.sweeper.min_steps=2"] if sweeper == "halving" else []
    proc = run_cli("-m", *SMALL, "train.steps=4", "model.eps=0.1", *extra,
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert outside.read_text() == "precious\n" and not (sweep / "multirun.yaml").is_symlink()


@pytest.mark.parametrize("name", [SWEEP_LOCK_FILE, "optuna.journal"])
def test_a_hard_linked_sweep_file_is_refused(tmp_path, name):
    """A sweep directory's lock or study journal with a second name (a hard link to a file
    outside): refused in one line, the outside file untouched (a sweep directory has no run's
    scan for links: this check alone guards it)."""
    from hydra_plugins.arnn_optuna_sweeper._journal import FolderJournal

    outside, sweep = tmp_path / "precious", tmp_path / "sweep"
    outside.write_text("precious\n")
    sweep.mkdir()
    os.link(outside, sweep / name)
    with Folder(sweep) as folder, pytest.raises(UnsafeRunDir, match="hard link"):
        if name == SWEEP_LOCK_FILE:
            DirLock(folder, SWEEP_LOCK_FILE, "sweep directory").__enter__()
        else:
            FolderJournal(folder, (0.0, 1.0))
    assert outside.read_text() == "precious\n"


def test_a_write_whose_rename_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    """write_atomic's promise: the previous file whole, and nothing else left behind."""
    (tmp_path / "f").write_text("before")

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(storage.os, "replace", refuse)
    with Folder(tmp_path) as folder, pytest.raises(WriteError, match="cannot write"):
        folder.write_atomic("f", b"after")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    assert (tmp_path / "f").read_text() == "before"


@pytest.mark.parametrize("refusal,args", [
    ("mnist: files not found", ("dataset=mnist", "dataset.download=false", "data_dir=data")),
    ("train.resume='must' but there is no checkpoint", ("train.resume=must",)),
])
def test_a_refused_run_leaves_no_directory(tmp_path, refusal, args):
    """A run refused before any work (its data missing, no checkpoint to resume): one line,
    and no run directory (nor the folders above it) is left behind (a failed download's
    empty folders: test_data)."""
    assert refusal in one_line_error(run_cli(*args, cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_path_is_shown_relative_inside_the_working_directory_and_whole_without_one(
        tmp_path, monkeypatch):
    """`shown` prints paths in the closing lines of a run; a run whose working directory was
    removed meanwhile (a git worktree taken away under a long job) still ends with its path."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(tmp_path)
    assert storage.shown(tmp_path / "run" / "results.json") == os.path.join("run", "results.json")
    assert storage.shown("/elsewhere/run") == "/elsewhere/run"
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert storage.shown(tmp_path / "run") == str(tmp_path / "run")
