"""What touches a run directory's files: atomic writes and the one-writer lock.

`write_atomic` writes a temporary file with a name unique to this writer, fsyncs it and renames
it over the target: readers see the old file or the new one, whole. A failing write (disk full,
I/O error) removes its temporary file, leaves the previous file as it was and raises
`WriteError` naming the file and the OS error.

`RunDirLock` is an OS-level lock (flock) on `<run dir>/.arnn.lock`, held while a run works. The
kernel releases it when the process dies, so `kill -9` never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from arnn.errors import UserError

log = logging.getLogger("arnn")
LOCK_FILE = ".arnn.lock"


class WriteError(UserError):
    """A run file that could not be written; the previous version is left whole."""


class RunDirBusy(UserError):
    """Another process holds the run directory; nothing was changed."""


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one file system
    except OSError as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise WriteError(
            f"cannot write {path}: {e.strerror or e} (errno {e.errno}); "
            "the previous file, if any, is whole"
        ) from None


class RunDirLock:
    """`with RunDirLock(run_dir):` holds the directory for this process, or raises RunDirBusy
    naming the holder (pid, host, start time). File systems without flock (Lustre mounted
    without `-o flock`, some NFS set-ups) get a warning and no lock."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirBusy(
                f"run directory {self.path.parent} is in use by {holder}; nothing was changed "
                "(wait for it to finish, or stop it first)"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            log.warning("%s: this file system has no flock (%s); two runs started on this "
                        "directory would not be stopped", self.path, e.strerror)
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
