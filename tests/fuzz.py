"""The fuzz harness: each case runs in a forked child under a memory cap (setrlimit on its address
space) and a bound on its work (CPU seconds: what load on a shared machine does not inflate,
unlike wall time, which only guards against a hang), and ends the way a user would see it: exit
0 (read), or one `error:` line and exit 2 (a UserError); a traceback (exit 1) or a signal is a
failure. Plus generators of damaged and hostile files for each format arnn reads."""

from __future__ import annotations

import gzip
import os
import random
import resource
import signal
import struct
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MEMORY_CAP = 500 << 20  # address space a case may add to what the process already maps
CPU_LIMIT = 5.0  # CPU seconds (user + system) a case may spend
HANG_LIMIT = 300  # wall seconds after which a case is taken for hung and stopped


@dataclass
class Outcome:
    code: int | None  # exit status, None when a signal ended the child
    signal: int | None
    output: str  # what the child wrote: the error line, or a traceback
    seconds: float  # CPU seconds
    grew: int  # bytes the child's resident memory grew by at its peak

    def problem(self) -> str | None:
        """Why this outcome breaks the rule, or None."""
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}: {self.output[-2000:]}"
        if self.code not in (0, 2):
            return f"exit {self.code}: {self.output[-3000:]}"
        lines = self.output.splitlines()
        if self.code == 2 and (len(lines) != 1 or not lines[0].startswith("error: ")):
            return f"not one error line: {self.output[-2000:]}"
        if self.seconds > CPU_LIMIT:
            return f"took {self.seconds:.1f} CPU s (limit {CPU_LIMIT} s)"
        return None


def _statm() -> tuple[int, int]:
    """(address space, resident) of this process, bytes."""
    size, resident = open("/proc/self/statm").read().split()[:2]
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


def in_child(call: Callable[[], object], cap: int = MEMORY_CAP) -> Outcome:
    """Run `call` in a forked child limited to `cap` more bytes of address space (and stopped
    after HANG_LIMIT s); a UserError is printed as the command line prints it."""
    from arnn.errors import UserError, one_line

    read_end, write_end = os.pipe()
    address_space, resident = _statm()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            import torch

            torch.set_num_threads(1)  # no thread pool after fork
            resource.setrlimit(resource.RLIMIT_AS, (address_space + cap, address_space + cap))
            signal.alarm(HANG_LIMIT)
            try:
                call()
                code = 0
            except UserError as e:
                os.write(write_end, f"error: {one_line(e)}\n".encode())
                code = 2
            except BaseException:  # noqa: BLE001 - reported to the parent as a failure
                os.write(write_end, traceback.format_exc().encode()[-8000:])
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status, usage = os.wait4(pid, 0)
    seconds = usage.ru_utime + usage.ru_stime
    return Outcome(
        code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        output=b"".join(chunks).decode(errors="replace"), seconds=seconds,
        grew=max(0, usage.ru_maxrss * 1024 - resident),
    )


def mutations(data: bytes, seed: int = 0, flips: int = 30, random_cuts: int = 12
              ) -> Iterator[tuple[str, bytes]]:
    """Truncations at many cut points, random byte flips, an empty file."""
    rng = random.Random(seed)
    cuts = sorted({0, 1, 3, 4, 7, 8, 12, 15, 16, len(data) // 2, len(data) - 1}
                  | {rng.randrange(len(data)) for _ in range(random_cuts)})
    for cut in cuts:
        if cut < len(data):
            yield f"cut{cut}", data[:cut]
    for i in range(flips):
        flipped = bytearray(data)
        for _ in range(1 + i % 3):
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        yield f"flip{i}", bytes(flipped)


def expect(outcome: Outcome, codes: tuple[int, ...], label: str) -> None:
    problem = outcome.problem()
    assert problem is None, f"{label}: {problem}"
    assert outcome.code in codes, f"{label}: exit {outcome.code}: {outcome.output}"
    assert outcome.grew < MEMORY_CAP, f"{label}: grew {outcome.grew >> 20} MB"


def fuzz_file(tmp_path: Path, data: bytes, read: Callable[[Path], object], seed: int, flips: int,
              name: str = "f") -> int:
    """Every mutation ends in a read or one line; returns how many were refused."""
    refused = 0
    for label, mutated in mutations(data, seed, flips):
        path = tmp_path / f"{label}-{seed}" / name
        path.parent.mkdir()
        path.write_bytes(mutated)
        outcome = in_child(lambda p=path: read(p))
        expect(outcome, (0, 2), label)
        refused += outcome.code == 2
    return refused


# --- pickle opcodes, to write hostile CIFAR batches byte by byte ------------------------------

PROTO, STOP, MARK, TUPLE, REDUCE, BUILD = b"\x80\x02", b".", b"(", b"t", b"R", b"b"
EMPTY_DICT, EMPTY_LIST, SETITEMS, APPENDS, POP = b"}", b"]", b"u", b"e", b"0"
NONE, NEWTRUE, NEWFALSE = b"N", b"\x88", b"\x89"


def g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def by(raw: bytes) -> bytes:
    """bytes as a Python 2 pickle stores them (read with encoding='bytes')."""
    return b"T" + struct.pack("<I", len(raw)) + raw


def i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def put(k: int) -> bytes:
    return b"r" + struct.pack("<I", k)


def get(k: int) -> bytes:
    return b"j" + struct.pack("<I", k)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


PLAIN_DTYPE_STATE = tup(i(3), s("|"), NONE, NONE, NONE, i(-1), i(-1), i(0))


def dtype(name: str = "u1", state: bytes = PLAIN_DTYPE_STATE) -> bytes:
    return g("numpy", "dtype") + tup(s(name), NEWFALSE, NEWTRUE) + REDUCE + state + BUILD


def array(shape: tuple[int, ...], raw: bytes, dtype_ops: bytes | None = None) -> bytes:
    """numpy's own pickling of an array: _reconstruct, then BUILD with its state."""
    return (g("numpy.core.multiarray", "_reconstruct")
            + tup(g("numpy", "ndarray"), tup(i(0)), by(b"b")) + REDUCE
            + tup(i(1), tup(*map(i, shape)), dtype_ops or dtype(), NEWFALSE, by(raw)) + BUILD)


def batch(data_ops: bytes, labels_ops: bytes) -> bytes:
    return (PROTO + EMPTY_DICT + MARK + by(b"data") + data_ops + by(b"labels") + labels_ops
            + SETITEMS + STOP)


def int_list(values: list[int]) -> bytes:
    return EMPTY_LIST + MARK + b"".join(map(i, values)) + APPENDS


def with_digest(archive: bytes) -> bytes:
    """A checkpoint file (version 2) around a torch archive: any archive gets a valid digest."""
    import hashlib

    return f"arnn-checkpoint 2 sha256={hashlib.sha256(archive).hexdigest()}\n".encode() + archive


def gzip_bomb(header: bytes, size: int) -> bytes:
    """`header`, then `size` zero bytes, gzip-compressed (about size / 1000 bytes)."""
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1) as f:
        f.write(header)
        zeros = bytes(1 << 24)
        for _ in range(size >> 24):
            f.write(zeros)
    return buffer.getvalue()
