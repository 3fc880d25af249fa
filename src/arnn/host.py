"""The machine a run computes on: its thread count (train.threads), whether subnormal floats are
flushed to zero (train.flush_denormal), how it keeps freed memory, and the description recorded
with every result (threads, denormals, torch, BLAS, CPU), so that a number can be traced to what
produced it and a resume on other terms says so.

Threads change the numbers: torch's reductions (matrix products, sums) split their work by
thread, and the order of floating-point sums changes the last bits, which a long run amplifies
(the default digits run ends at test accuracy 0.8689 with one thread, 0.9067 with two). A run is
bit-identical to another only with the same thread count, backend, torch, BLAS and kind of CPU
(an Intel Xeon and an AMD EPYC round differently).

Denormals: a run that has blown up but stays under train.max_loss fills its states and gradients
with subnormal floats (below 1.2e-38 in float32), which x86 processors compute 40-50 times slower
than normal ones (docs/running.md, "Long runs"): flushed to zero, such a run goes on at its usual
speed. A healthy run meets none: its numbers are the same bit for bit either way (measured:
docs/running.md, "Long runs").

Memory: a training step allocates the same large buffers every step (the states and activations
of backpropagation through time, hundreds of MB at T = 784); glibc returns such blocks to the
system when they are freed and the next step faults them in again, page by page, which on this
project's CPUs cost more than the arithmetic (nn.LSTM at T = 784: 540 ms a step, 190 ms with the
memory kept). `keep_freed_memory` tells glibc to keep freed memory in the process for reuse.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import re

import torch

# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Large blocks from the heap (no mmap), and freed memory never trimmed: reused by the next
    step instead of faulted in anew. False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def set_threads(threads: int | None) -> int:
    """torch's intra-op threads (and the cpu backend's): `threads`, or torch's default (the
    cores, or OMP_NUM_THREADS) when None; returns the count in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def set_flush_denormal(flush: bool) -> str:
    """CPU arithmetic on subnormal floats: computed as zero (`flush`) or kept (IEEE); returns
    what holds now (`denormals`). The flag is the calling thread's, inherited by the threads it
    starts later: set before torch's first parallel work (as a run's `build` does), it holds on
    all of them; a processor that cannot flush keeps them."""
    torch.set_flush_denormal(flush)
    return denormals()


_GRAIN = 32768  # torch's grain size: fewer elements are computed by one thread


def denormals() -> str:
    """"flushed", "kept" or "partly" (some threads flush, others keep): read from the arithmetic
    itself (torch has no getter), so the record says what computed the run. The flag is per
    thread; a thread started before it was set keeps its own, hence the probes large enough to
    be split among torch's threads, elementwise and in a matrix product (BLAS's threads)."""
    threads = torch.get_num_threads()
    tiny = torch.full((_GRAIN * 4 * threads,), 1e-30) * 1e-10  # 1e-40: subnormal in float32
    small = torch.full((256, 256), 1e-21)
    flushed = torch.cat([tiny, (small @ small).flatten()]) == 0  # each entry 2.6e-40 kept
    return "flushed" if flushed.all() else "kept" if not flushed.any() else "partly"


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """The CPU's name and instruction-set flags, from /proc/cpuinfo (the machine's type and no
    flags where there is none)."""
    found = {"name": platform.processor() or platform.machine(), "flags": ""}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and found["name"] in ("", platform.processor(),
                                                             platform.machine()):
                    found["name"] = value.strip()
                elif key in ("flags", "Features") and not found["flags"]:
                    found["flags"] = value.strip()
                if found["flags"] and key == "":  # the first processor's block ends
                    break
    except OSError:
        pass
    return found


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, str]:
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return {"torch": str(torch.__version__), "blas": blas.group(1) if blas else "unknown",
            "cpu": f"{cpu_info()['name']} ({torch.backends.cpu.get_cpu_capability()})"}


def describe(backend: str | None) -> dict[str, object]:
    """What computed a run: threads, backend, denormals, torch, BLAS, CPU (results.json's
    `host`)."""
    return {"threads": torch.get_num_threads(), "backend": backend, "denormals": denormals(),
            **_static()}


HOST_KEYS = ("threads", "backend", "denormals", "torch", "blas", "cpu")
MAX_HOST_TEXT = 200  # characters of one value: a CPU's name is about 50


def is_description(value: object) -> bool:
    """Whether `value` is a description `describe` makes (a file's is checked before use)."""
    return isinstance(value, dict) and set(value) <= set(HOST_KEYS) and all(
        v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 20)
        or (isinstance(v, str) and len(v) <= MAX_HOST_TEXT and v.isprintable())
        for v in value.values())


def with_current(hosts: list[dict[str, object]], current: dict[str, object]
                 ) -> list[dict[str, object]]:
    """The distinct descriptions of a run's sessions, in order, the current one last."""
    return [h for h in hosts if h != current] + [current]


def changed_terms(saved: dict[str, object] | None, current: dict[str, object]) -> list[str]:
    """`threads 2 there, 1 now` for each setting of the computation that differs (what a
    resume under other terms changes: its result is not bit-identical to an uninterrupted
    run's). Every term of HOST_KEYS may change the last bits (denormals only where the run meets
    a subnormal); a term the checkpoint did not record (written before it was) has nothing to
    compare."""
    if not saved:
        return []
    return [f"{key} {saved[key]!r} there, {current[key]!r} now"
            for key in HOST_KEYS if key in saved and saved[key] != current[key]]
