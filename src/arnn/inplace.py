"""Files arnn writes in place rather than atomically: the one-writer locks of run and sweep
directories, and the job log.

`DirLock` is an OS-level lock (flock) on a lock file, held while a run (`.arnn.lock`) or a sweep
(`.arnn-sweep.lock`) works: the kernel releases it when the process dies, so `kill -9` never
leaves a stale lock behind, and nobody but its holder removes it. Both are opened through the
directory held (`Folder.open_own`): never through a link, never a file with a second name.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from arnn.errors import UserError
from arnn.storage import Folder, WriteError, _file_mode, _refused, check_own

log = logging.getLogger("arnn")
LOCK_FILE = ".arnn.lock"
SWEEP_LOCK_FILE = ".arnn-sweep.lock"


class RunDirBusy(UserError):
    """Another process holds the directory; nothing was changed."""


class RunLogHandler(logging.FileHandler):
    """The job log (`train.log`, configured in conf/train.yaml for Hydra's job logging): opened
    on its first record, never through a link nor as a hard link of another file. A log that
    cannot be opened or written is skipped, without logging's own traceback; the run's own
    checks then refuse the directory, or its writes fail, in one line."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None) -> None:
        super().__init__(filename, mode, encoding, delay=True)

    def _open(self):  # noqa: ANN202 - logging's signature
        path = Path(self.baseFilename)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, _file_mode())
        except OSError as e:
            raise _refused(path, e) from None
        check_own(fd, path)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            try:
                self.stream = self._open()
            except UserError:
                return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """A full disk or a vanished file: the line is lost, not the run (no traceback)."""


class DirLock:
    """`with DirLock(folder):` holds the directory for this process, or raises RunDirBusy
    naming the holder (pid, host, start time). File systems without flock (Lustre mounted
    without `-o flock`, some NFS set-ups) get a warning and no lock."""

    def __init__(self, folder: Folder | Path, name: str = LOCK_FILE,
                 what: str = "run directory") -> None:
        self._opened = not isinstance(folder, Folder)  # a folder opened here, closed here
        self.folder = Folder(folder) if self._opened else folder
        self.name, self.what = name, what
        self.path = self.folder.path / name
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        try:
            fd = self.folder.open_own(self.name, os.O_RDWR)
        except UserError:
            self._close_folder()
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            self._close_folder()
            raise RunDirBusy(
                f"{self.what} {self.folder.path} is in use by {holder[:200]}; nothing was "
                "changed (wait for it to finish, or stop it first)"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            log.warning("%s: this file system has no flock (%s); two processes started on "
                        "this directory would not be stopped", self.path, e.strerror)
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
        self._close_folder()

    def _close_folder(self) -> None:
        if self._opened:
            self.folder.close()
