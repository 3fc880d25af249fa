"""Reading files that come from elsewhere, within bounds: the one way arnn opens a record, a
config, a dataset file or a checkpoint it did not just write.

A file is read only when it is a regular file (a FIFO, a device or `/dev/zero` behind a link is
refused without blocking), only up to a size its format can legitimately have (checked against
`fstat` before reading, and again while reading), and parsed with limits on nesting (JSON, YAML)
and without YAML aliases (which let a few bytes describe an exponentially large value).
Every refusal raises the caller's error class (a `UserError`) with the file named, on one line.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import yaml

MAX_DEPTH = 32  # nesting of a record or config: ours are at most 4 deep


def open_regular(path: Path, limit: int, error: type[Exception]) -> BinaryIO:
    """`path` opened for reading when it is a regular file of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        raise error(f"{path}: not a regular file (a FIFO, device or directory is never read)"
                    if not stat.S_ISREG(info.st_mode) else
                    f"{path}: {info.st_size} bytes, more than the {limit} such a file can have")
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int, error: type[Exception]) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes."""
    with open_regular(path, limit, error) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise error(f"{path}: cannot be read ({e.strerror})") from None
    if len(data) > limit:  # grew while being read
        raise error(f"{path}: more than the {limit} bytes such a file can have")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts, walked without recursion (shared references are
    visited once per path, but depth is capped before any path gets long)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            todo.extend((child, depth + 1) for child in
                        (node.values() if isinstance(node, dict) else node)
                        if isinstance(child, dict | list))
    return deepest


def _check_depth(path: Path, value: Any, error: type[Exception]) -> Any:
    if _depth(value) > MAX_DEPTH:
        raise error(f"{path}: nested deeper than {MAX_DEPTH} levels")
    return value


def load_json(path: Path, limit: int, error: type[Exception]) -> Any:
    data = read_regular(path, limit, error)
    try:
        value = json.loads(data.decode(), parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # also UnicodeDecodeError
        raise error(f"{path}: not JSON ({e})") from None
    return _check_depth(path, value, error)


# A quoted scalar (single or double quotes, on one line) where YAML starts a scalar: its
# brackets are text, not nesting.
_QUOTED = re.compile(rb"""(?:(?<=[\s\[{,:])|^)(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*')""",
                     re.MULTILINE)


def _flow_depth(raw: bytes) -> int:
    """The deepest nesting of brackets and braces outside quoted scalars (an upper bound)."""
    codes = np.frombuffer(_QUOTED.sub(b"", raw), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a record may hold")


def load_yaml(path: Path, limit: int, error: type[Exception]) -> Any:
    """YAML without aliases (`&a`/`*a`): they are how a 1 kB file expands to gigabytes."""
    raw = read_regular(path, limit, error)
    if _flow_depth(raw) > MAX_DEPTH:  # the parser is slow on deep [[[...]]]: refused unparsed
        raise error(f"{path}: nested deeper than {MAX_DEPTH} levels")
    text = raw.decode(errors="replace")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise error(f"{path}: uses a YAML alias (*{event.anchor}); arnn's files have none")
        value = yaml.safe_load(text)
    except RecursionError:
        raise error(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not YAML ({' '.join(str(e).split())})") from None
    return _check_depth(path, value, error)
