"""What touches a run's or a sweep's directory: atomic writes, the one-writer locks, the job log,
and the rule that arnn writes only inside the directory a file belongs to.

A `Folder` is a directory opened once (`O_DIRECTORY`; the path may be a link, to scratch space,
followed at that open only): every write goes through its descriptor (`openat`-style, `dir_fd`),
so a link swapped in for the directory or one of its sub-directories while a run trains sends
nothing elsewhere, and every file is opened with `O_NOFOLLOW`, so a link planted in place of a
file is refused. Libraries that take a path (TensorBoard) get `/proc/self/fd/<fd>`, the same
directory.

`Folder.write_atomic` writes a temporary file with a name unique to this writer (created with
O_EXCL and O_NOFOLLOW), fsyncs it and renames it over the target: readers see the old file or the
new one, whole, and a link or a second hard link at the target is replaced, never written
through. A failing write (disk full, out of inodes, read-only file system, a directory that cannot
be written) removes its temporary file, leaves the previous file as it was and raises
`WriteError` naming the file and the OS error. Files get the mode every other file of a run has
(0666 less the umask), so that others sharing a sweep can read them. Files written in place (the
locks, the job log) must be this directory's own: a file with a second hard link is refused.

`check_run_dir` refuses a run directory that holds a symbolic link anywhere below it: a run never
makes one. The files written in place (the locks, the job log): arnn.inplace.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
from pathlib import Path

from arnn.errors import UserError

log = logging.getLogger("arnn")
TMP_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # write_atomic's: .<name>.<8 random>.tmp
_SCAN_LIMIT = 100_000  # entries looked at for links; a run directory holds a few dozen


class WriteError(UserError):
    """A file that could not be written; the previous version is left whole."""


class UnsafeRunDir(UserError):
    """A directory arnn must not write into (a link inside it, a file where a directory
    belongs, a hard-linked file it would write in place); nothing was changed."""


def _file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _refused(path: Path, e: OSError) -> UnsafeRunDir:
    why = ("is a symbolic link; arnn follows no links: remove it" if e.errno == errno.ELOOP
           else "is not a directory" if e.errno == errno.ENOTDIR else e.strerror)
    return UnsafeRunDir(f"{path} cannot be opened ({why}); nothing was changed")


class Folder:
    """A directory held open: writes go to it whatever happens to its path afterwards."""

    def __init__(self, path: Path | str, fd: int | None = None) -> None:
        self.path = Path(path)
        if fd is None:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except (FileExistsError, NotADirectoryError):
                raise UnsafeRunDir(f"{self.path} is not a directory (a file stands there or "
                                   "on the way to it); nothing was changed") from None
            except OSError as e:
                raise WriteError(f"cannot create {self.path}: {e.strerror}") from None
        self.fd = fd
        self._subs: dict[str, Folder] = {}

    @property
    def proc_path(self) -> str:
        """A path to this very directory, for libraries that open files by path."""
        return f"/proc/self/fd/{self.fd}"

    def sub(self, name: str) -> Folder:
        """The sub-directory `name` (made if missing, never through a link), held open."""
        if name not in self._subs:
            try:
                os.mkdir(name, dir_fd=self.fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise WriteError(f"cannot create {self.path / name}: {e.strerror}") from None
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=self.fd)
            except OSError as e:
                raise _refused(self.path / name, e) from None
            self._subs[name] = Folder(self.path / name, fd)
        return self._subs[name]

    def _parent_of(self, name: str) -> tuple[Folder, str]:
        *dirs, leaf = Path(name).parts
        folder = self
        for part in dirs:
            folder = folder.sub(part)
        return folder, leaf

    def write_atomic(self, name: str | Path, data: bytes) -> Path:
        """`name` (relative, sub-directories made as needed) holds `data`, whole or not at all."""
        folder, leaf = self._parent_of(str(name))
        target, tmp = folder.path / leaf, f".{leaf}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        fd, created = None, False
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         _file_mode(), dir_fd=folder.fd)
            created = True
            with open(fd, "wb", closefd=False) as f:
                f.write(data)
                f.flush()
                os.fsync(fd)
            os.close(fd)
            fd = None
            os.replace(tmp, leaf, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
        except OSError as e:
            if fd is not None:
                os.close(fd)
            if created:  # the rename failed too, or the write: no temporary file stays
                try:
                    os.unlink(tmp, dir_fd=folder.fd)
                except OSError:
                    pass
            raise WriteError(f"cannot write {target}: {e.strerror or e} (errno {e.errno}); "
                             "the previous file, if any, is whole") from None
        return target

    def open_own(self, name: str, flags: int) -> int:
        """A file of this directory opened to be written in place (created if missing): never
        through a link, never a file that also has another name (a hard link)."""
        folder, leaf = self._parent_of(name)
        try:
            fd = os.open(leaf, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, _file_mode(),
                         dir_fd=folder.fd)
        except OSError as e:
            raise _refused(folder.path / leaf, e) from None
        check_own(fd, folder.path / leaf)
        return fd

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_own(fd: int, path: Path) -> None:
    """A file opened to be written in place must be a regular file with this one name."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "has another name (a hard link)" if stat.S_ISREG(info.st_mode) else \
            "is not a regular file"
        raise UnsafeRunDir(f"{path} {what}; arnn writes in place only a file of its own: "
                           "remove it. Nothing was changed")


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data`, whole or not at all (its directory opened for this one write)."""
    with Folder(Path(path).parent) as folder:
        folder.write_atomic(Path(path).name, data)


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory with a symbolic link or a hard-linked file anywhere below it (the
    directory itself may be a link: to scratch space, as clusters are used)."""
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
            if entry.is_file(follow_symlinks=False) and entry.stat(
                    follow_symlinks=False).st_nlink > 1:
                raise UnsafeRunDir(
                    f"{entry.path} has another name (a hard link); a run writes only files of "
                    "its own: remove it (or copy it, cp without -l). Nothing was changed")
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


def shown(path: Path | str) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except (OSError, ValueError):  # the working directory was removed; another drive (Windows)
        return str(path)
    return str(path) if relative.startswith("..") else relative
