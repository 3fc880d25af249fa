"""The cpu backend's kernel cache (arnn.recurrence.cpu_build): a library is loaded only when this
user built it, nobody else can write it or its directories, and it is whole; anything else is
built again (one warning) or leaves the backend unavailable with the reason, never a signal."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from arnn.recurrence import cpu_build
from tests.fixtures import ROOT

OTHER_USER = 54321  # a uid that is not ours (the tests run as root, who may chown)


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory) -> Path:
    """A cache with the kernel compiled once for this module."""
    root = tmp_path_factory.mktemp("cache") / "arnn"
    old = os.environ.get("ARNN_CACHE_DIR")
    os.environ["ARNN_CACHE_DIR"] = str(root)
    try:
        cpu_build.build()
    finally:
        if old is None:
            del os.environ["ARNN_CACHE_DIR"]
        else:
            os.environ["ARNN_CACHE_DIR"] = old
    return root


@pytest.fixture()
def cache(built_cache, tmp_path, monkeypatch) -> Path:
    """A copy of the built cache, in use for this test."""
    root = tmp_path / "arnn"
    shutil.copytree(built_cache, root, symlinks=True)
    monkeypatch.setenv("ARNN_CACHE_DIR", str(root))
    return root


def _library(cache: Path) -> Path:
    (path,) = cache.glob("cpu_kernel/*/libarnn_cpu.so")
    return path


def _build(caplog) -> tuple[Path, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="arnn"):
        path = cpu_build.build()
    return path, [r.getMessage() for r in caplog.records]


def test_a_cached_library_is_used_as_it_is(cache, caplog):
    library = _library(cache)
    before = library.stat().st_mtime_ns
    path, warnings = _build(caplog)
    assert path == library and library.stat().st_mtime_ns == before and warnings == []
    assert stat.S_IMODE(library.stat().st_mode) & 0o077 == 0
    for folder in (cache, cache / "cpu_kernel", library.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_key_holds_the_instruction_set(cache, monkeypatch):
    """A library built for one set of instructions is not looked for on a CPU of the same
    name with others (a -march=native library would die of an illegal instruction there)."""
    from arnn import host

    library = _library(cache)
    info = host.cpu_info()
    monkeypatch.setattr(cpu_build, "cpu_info", lambda: {**info, "flags": info["flags"] + " x"})
    monkeypatch.setattr(cpu_build, "_compile", lambda compiler, folder: None)  # no compile
    assert cpu_build.build().parent != library.parent


def test_a_build_left_by_a_killed_compile_is_removed(cache, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    library = _library(cache)
    left = library.parent / f".build-{dead}.abc123"
    left.mkdir()
    (left / "libarnn_cpu.so").write_bytes(b"half a library")
    _build(caplog)
    assert not left.exists() and _library(cache) == library


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["foreign owner", "truncated 5000", "truncated 40000",
                                    "writable by others"])
def test_a_library_that_is_not_ours_and_whole_is_built_again(cache, caplog, damage):
    library = _library(cache)
    if damage == "foreign owner":
        os.chown(library, OTHER_USER, OTHER_USER)
    elif damage.startswith("truncated"):
        with open(library, "r+b") as f:
            f.truncate(int(damage.split()[1]))
    else:
        library.chmod(0o777)
    path, warnings = _build(caplog)
    assert path == library and len(warnings) == 1 and "building it again" in warnings[0]
    info = library.stat()
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077 == 0
    _check_loads(path)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["cache", "cpu_kernel"])
def test_a_cache_others_may_write_is_not_used(cache, caplog, where):
    """A cache directory another user could write (or owns): the kernel is built in a private
    temporary directory instead, one warning; the shared library is never loaded."""
    folder = cache if where == "cache" else cache / "cpu_kernel"
    folder.chmod(0o777)
    library = _library(cache)
    path, warnings = _build(caplog)
    assert path.parent != library.parent and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(warnings) == 1 and "not this user's alone" in warnings[0]
    _check_loads(path)


@pytest.mark.slow
def test_a_new_cache_is_private_whatever_the_umask(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ARNN_CACHE_DIR", str(tmp_path / "fresh" / "arnn"))
    old = os.umask(0)
    try:
        path, warnings = _build(caplog)
    finally:
        os.umask(old)
    assert warnings == []
    for item in (path, path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(item.stat().st_mode) & 0o077 == 0, item


def test_a_library_without_the_kernels_symbols_leaves_the_backend_unavailable(cache, tmp_path):
    """A library that loads but lacks the kernel's functions (built from another source, with
    a matching digest): the backend is unavailable with the reason, and `auto` computes with
    the torch backend after one warning; no traceback."""
    source = tmp_path / "empty.cpp"
    source.write_text('extern "C" int arnn_nothing() { return 0; }\n')
    library = _library(cache)
    subprocess.run(["g++", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    library.chmod(0o700)
    (library.parent / "libarnn_cpu.so.sha256").write_text(cpu_build._sha256(library))
    code = ("import logging; logging.basicConfig()\n"
            "from arnn.recurrence import cpu_build, resolve_backend\n"
            "print(cpu_build.available(), repr(cpu_build.unavailable_reason()))\n"
            "print(resolve_backend('auto', 'cpu'))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "ARNN_CACHE_DIR": str(cache)})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    available, reason, backend = proc.stdout.split("\n")[0].split(" ", 1) + [
        proc.stdout.split("\n")[1]]
    assert available == "False" and "arnn_forward_f32" in reason and backend == "torch"
    assert proc.stderr.count("cpu backend is unavailable") == 1


def _check_loads(path: Path) -> None:
    """The library at `path` loads in a fresh process and computes."""
    code = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
            "print(hasattr(lib, 'arnn_forward_f32'))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
