"""Errors whose one-line message is the whole story for the user.

Every module raises a subclass of `UserError` for a bad value or a file it cannot use; the
entry points (cli, the halving sweeper, collect) print it as one line, `error: ...`, and exit 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from typing import Any, NoReturn


class UserError(Exception):
    """A refusal the user can act on; its message names the bad value or file."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot be used."""


def invalid(key: str, value: Any, allowed: str | Iterable[str]) -> ConfigError:
    """`key=value is invalid: <allowed>`; an iterable lists the allowed values."""
    if not isinstance(allowed, str):
        allowed = "allowed: " + ", ".join(str(a) for a in allowed)
    return ConfigError(f"{key}={value!r} is invalid: {allowed}")


INT_LIMIT = 2**63 - 1  # an integer setting is an int64 somewhere (torch, numpy)
# A number setting must fit a float32 (what runs compute in: torch's optimizers hand lr and
# weight_decay to float32 arithmetic, the kernels take eps as a float).
FLOAT_LIMIT = 3.0e38


class Range:
    """The values a number setting may take beyond its type: `low` (excluded when `strict`),
    an upper bound `high` (excluded when `high_strict`), whether it is an integer, and for a
    list of numbers (Adam's betas) how many it holds."""

    def __init__(self, low: float, strict: bool = False, integer: bool = False,
                 high: float | None = None, high_strict: bool = False,
                 length: int | None = None) -> None:
        self.low, self.strict, self.integer = low, strict, integer
        self.high = high if high is not None else INT_LIMIT if integer else FLOAT_LIMIT
        self.high_strict, self.length = high_strict, length

    def check(self, key: str, value: Any) -> None:
        if self.length is not None:
            if not (isinstance(value, list | tuple) and len(value) == self.length):
                raise invalid(key, value, f"must be a list of {self.length} numbers")
            for item in value:
                self._check_one(key, value, item)
        else:
            self._check_one(key, value, value)

    def _check_one(self, key: str, shown: Any, value: Any) -> None:
        kind = "an integer" if self.integer else "a number"
        if self.length is not None:
            kind = f"{self.length} {'integers' if self.integer else 'numbers'}, each"
        ok = isinstance(value, int) if self.integer else isinstance(value, int | float)
        ok = ok and not isinstance(value, bool) and (isinstance(value, int)
                                                     or math.isfinite(value))
        if not (ok and (value > self.low if self.strict else value >= self.low)):
            raise invalid(key, shown, f"must be {kind} {'>' if self.strict else '>='} "
                                      f"{self.low:g}")
        if value > self.high or (self.high_strict and value == self.high):
            high = f"{self.high:,}" if self.integer else f"{self.high:g}"
            raise invalid(key, shown, f"must be {kind} {'<' if self.high_strict else '<='} "
                                      f"{high}")


MAX_LINE = 1000  # characters of an error line; a name or value quoted from a file may be huge


def one_line(error: BaseException) -> str:
    """An error's message on one line, printable: texts quoted from files may hold newlines,
    terminal escape sequences or megabytes."""
    text = str(error)
    cut = len(text) > MAX_LINE
    text = " ".join(text[:MAX_LINE].split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + (f"... ({len(str(error))} characters in all)" if cut else "")


def exit_with(error: UserError) -> NoReturn:
    """Print the refusal as one line and exit 2 (the entry points' one way to fail)."""
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    sys.exit(2)


class OneLineParser(argparse.ArgumentParser):
    """argparse for arnn's command-line tools: a bad argument is one `error:` line and exit 2,
    like every other refusal (argparse's own prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        exit_with(UserError(f"{self.prog}: {message} (--help lists the arguments)"))


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value
