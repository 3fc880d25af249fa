"""The cpu backend's compiled kernel (cpu_kernel.cpp): built, cached and loaded, safely.

The kernel is plain C++ (no PyTorch headers), compiled once per machine with the system's C++
compiler (`$CXX`, else g++ or c++) for the CPU it runs on (`-march=native`) and loaded with
ctypes; a compile takes about 2 s, a cached load milliseconds. Without a compiler, or when the
compile or the load fails, `available()` is False with the reason (`unavailable_reason`), and
`auto` chooses the torch backend instead, saying so once.

The cache (`$ARNN_CACHE_DIR`, default `~/.cache/arnn`, then `cpu_kernel/<key>/`) is keyed by a
digest of the source, the flags, the compiler's version and the CPU (its name and instruction-set
flags: a `-march=native` library is never loaded on a CPU with other instructions). Loading a
library runs its code, so a library is loaded only when
- its directories (the cache's own three levels) and the file belong to this user and no one
  else may write them (else the kernel is built in a private temporary directory, one warning);
- its SHA-256 is the one recorded when it was built (a truncated, altered or foreign library is
  built again, one warning: never a signal);
- it has every symbol this module calls (else: unavailable, the reason said).
Everything is created private (0700) whatever the umask. A compile runs in `.build-<pid>.*`
inside the key's directory and the library is renamed into place whole; a build directory left
by a killed process is removed by the next build.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from arnn.host import cpu_info

log = logging.getLogger("arnn")
SOURCE = Path(__file__).with_name("cpu_kernel.cpp")
LIBRARY = "libarnn_cpu.so"
FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-std=c++17",
         "-shared", "-fPIC", "-fopenmp"]
_i, _p, _f, _d, _l = ctypes.c_int, ctypes.c_void_p, ctypes.c_float, ctypes.c_double, ctypes.c_long
SYMBOLS = {  # every function of the kernel, with its argument types
    "arnn_forward_f32": [_i, _i, _i, _i, _p, _p, _p, _p, _i, _p, _f, _p, _p, _i],
    "arnn_backward_f32": [_i, _i, _i, _i, _p, _p, _p, _f, _p, _p, _p, _p, _i, _p, _i],
    "arnn_forward_f64": [_i, _i, _i, _i, _p, _p, _d, _p, _p, _i],
    "arnn_backward_f64": [_i, _i, _i, _i, _p, _p, _p, _d, _p, _p, _p, _i],
    "arnn_matrix_gradient_f32": [_l, _i, _p, _p, _p, _i],
    "arnn_tanh_f32": [_p, _p, _l],
    "arnn_sigmoid_f32": [_p, _p, _l],
}


class KernelUnavailable(RuntimeError):
    """Why there is no compiled kernel (one line)."""


def compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_root() -> Path:
    """The cache's own directory (arnn's), holding `cpu_kernel/`."""
    base = os.environ.get("ARNN_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "arnn"
    return Path(base)


def private(path: Path) -> bool:
    """`path` is this user's own directory or file (not a link), which no one else may write."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)) \
        and info.st_uid == os.getuid() and not info.st_mode & 0o022


def _private_dirs(*paths: Path) -> bool:
    """Each of `paths` (parents first) made if missing, 0700, and private."""
    for path in paths:
        try:
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # the umask left out of mkdir's mode
        except FileExistsError:
            pass
        except OSError:
            return False
        if not private(path):
            return False
    return True


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _remove_dead_builds(folder: Path) -> None:
    """Build directories of processes that no longer run (a compile killed with -9)."""
    for build in folder.glob(".build-*"):
        pid = build.name.removeprefix(".build-").split(".")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(build, ignore_errors=True)


def _compile(compiler_path: str, folder: Path) -> None:
    """Compile into a build directory of `folder`, then rename the library and its digest into
    place (the digest first: a reader sees a matching pair, or rebuilds)."""
    build = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}.", dir=folder))
    try:
        built = build / LIBRARY
        proc = subprocess.run([compiler_path, *FLAGS, str(SOURCE), "-o", str(built)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise KernelUnavailable(f"{Path(compiler_path).name} failed: "
                                    f"{' '.join(proc.stderr.split())[:300]}")
        os.chmod(built, 0o700)
        digest = build / f"{LIBRARY}.sha256"
        digest.write_text(_sha256(built))
        os.replace(digest, folder / digest.name)
        os.replace(built, folder / LIBRARY)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _cached(folder: Path) -> bool:
    """Whether `folder` holds a library this user built and nobody changed since."""
    target, digest = folder / LIBRARY, folder / f"{LIBRARY}.sha256"
    if not os.path.lexists(target):
        return False
    if private(target) and private(digest) and digest.stat().st_size <= 128 \
            and digest.read_text().strip() == _sha256(target):
        return True
    log.warning("%s is not the library this user built there (changed, truncated or another "
                "user's): building it again", target)
    return False


def build() -> Path:
    """The compiled kernel for this machine: from the cache, or compiled into it."""
    compiler_path = compiler()
    if compiler_path is None:
        raise KernelUnavailable("no C++ compiler (set CXX, or install g++)")
    version = subprocess.run([compiler_path, "--version"], capture_output=True, text=True,
                             timeout=30).stdout.split("\n")[0]
    cpu = cpu_info()
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, version, cpu["name"],
                                    cpu["flags"]]).encode()).hexdigest()[:16]
    root = cache_root()
    folder = root / "cpu_kernel" / key
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # then root cannot be made either: the private temporary directory below
    if not _private_dirs(root, root / "cpu_kernel", folder):
        log.warning("the kernel cache %s is not this user's alone (owner or permissions): "
                    "building the cpu kernel in a private temporary directory", root)
        folder = Path(tempfile.mkdtemp(prefix="arnn-cpu-kernel-"))
    _remove_dead_builds(folder)
    if not _cached(folder):
        _compile(compiler_path, folder)
    return folder / LIBRARY


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | str:
    """The loaded kernel, or why there is none."""
    try:
        lib = ctypes.CDLL(str(build()))
        for name, argtypes in SYMBOLS.items():
            getattr(lib, name).argtypes = argtypes
    except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as e:
        return " ".join(str(e).split())[:400]
    return lib


def available() -> bool:
    return not isinstance(_library(), str)


def unavailable_reason() -> str | None:
    lib = _library()
    return lib if isinstance(lib, str) else None


def kernel() -> ctypes.CDLL:
    lib = _library()
    if isinstance(lib, str):
        raise KernelUnavailable(f"the cpu backend is unavailable: {lib}")
    return lib


_warned: list[bool] = []


def warn_unavailable() -> None:
    """One line, once per process: the torch backend stands in for `auto`."""
    if not _warned:
        _warned.append(True)
        log.warning("the cpu backend is unavailable (%s): using the torch backend, the same "
                    "computation, slower", unavailable_reason())
