"""What touches a run directory's files: atomic writes, the one-writer lock, the job log, and
the rule that a run writes only inside its own directory.

`write_atomic` writes a temporary file with a name unique to this writer (created with O_EXCL,
so never through a link), fsyncs it and renames it over the target: readers see the old file or
the new one, whole. A failing write (disk full, out of inodes, read-only file system, a directory
that cannot be written) removes its temporary file, leaves the previous file as it was and
raises `WriteError` naming the file and the OS error. Files get the mode every other file of a
run has (0666 less the umask), not mkstemp's 0600, so that others sharing a sweep can read them.

`check_run_dir` refuses a run directory that holds a symbolic link anywhere below it: a run
never makes one, and writing through one would change a file outside the run. The lock and the
job log are also opened with O_NOFOLLOW, so a link planted after the check is refused too.

`RunDirLock` is an OS-level lock (flock) on `<run dir>/.arnn.lock`, held while a run works. The
kernel releases it when the process dies, so `kill -9` never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from arnn.errors import UserError

log = logging.getLogger("arnn")
LOCK_FILE = ".arnn.lock"
TMP_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # write_atomic's: .<name>.<mkstemp's 8>.tmp
_SCAN_LIMIT = 100_000  # entries looked at for links; a run directory holds a few dozen


class WriteError(UserError):
    """A run file that could not be written; the previous version is left whole."""


class RunDirBusy(UserError):
    """Another process holds the run directory; nothing was changed."""


class UnsafeRunDir(UserError):
    """A run directory a run must not write into (a link inside it, a file where a directory
    belongs); nothing was changed."""


def _file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, data: bytes) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with open(fd, "wb") as f:
            os.fchmod(fd, _file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one file system; replaces a link itself
    except OSError as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise WriteError(
            f"cannot write {path}: {e.strerror or e} (errno {e.errno}); "
            "the previous file, if any, is whole"
        ) from None


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory with a symbolic link anywhere below it (the directory itself may
    be one: a link to scratch space is how clusters are used)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UnsafeRunDir(f"run directory {run_dir} is not a directory; nothing was changed")
    todo, seen = [run_dir] if run_dir.is_dir() else [], 0
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError as e:
            raise UnsafeRunDir(f"{e.filename}: cannot be listed ({e.strerror}); nothing was "
                               "changed") from None
        for entry in entries:
            seen += 1
            if entry.is_symlink():
                raise UnsafeRunDir(
                    f"{entry.path} is a symbolic link (to {os.readlink(entry.path)}); a run "
                    "writes only inside its own directory and follows no links: remove it. "
                    "Nothing was changed"
                )
            if entry.is_dir(follow_symlinks=False) and seen < _SCAN_LIMIT:
                todo.append(Path(entry.path))


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Temporary files a killed writer left (`.<name>.<random>.tmp`), removed; call it holding
    the lock, so that no writer of this directory is alive."""
    removed = []
    for folder in (run_dir, *(p for p in run_dir.iterdir()
                              if p.is_dir() and not p.is_symlink())):
        for tmp in folder.glob(f".*{TMP_SUFFIX}"):
            if _TEMPORARY.fullmatch(tmp.name) and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
    return removed


def _open_no_follow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        why = ("is a symbolic link; a run follows no links: remove it" if e.errno == errno.ELOOP
               else e.strerror)
        raise UnsafeRunDir(f"{path} cannot be opened ({why}); nothing was changed") from None


class RunLogHandler(logging.FileHandler):
    """The job log (`train.log`, configured in conf/train.yaml): opened on its first record,
    never through a link. A log that cannot be opened is skipped; the run's own check then
    refuses the directory in one line."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None) -> None:
        super().__init__(filename, mode, encoding, delay=True)

    def _open(self):  # noqa: ANN202 - logging's signature
        fd = _open_no_follow(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            try:
                self.stream = self._open()
            except UserError:
                return
        super().emit(record)


class RunDirLock:
    """`with RunDirLock(run_dir):` holds the directory for this process, or raises RunDirBusy
    naming the holder (pid, host, start time). File systems without flock (Lustre mounted
    without `-o flock`, some NFS set-ups) get a warning and no lock."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunDirLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"cannot create {self.path.parent}: {e.strerror}") from None
        fd = _open_no_follow(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirBusy(
                f"run directory {self.path.parent} is in use by {holder[:200]}; nothing was "
                "changed (wait for it to finish, or stop it first)"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            log.warning("%s: this file system has no flock (%s); two runs started on this "
                        "directory would not be stopped", self.path, e.strerror)
        try:
            os.ftruncate(fd, 0)
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n"
                      .encode(), 0)
        except OSError as e:
            os.close(fd)
            raise WriteError(f"cannot write {self.path}: {e.strerror}") from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
