"""What every dataset reader shares: the error it raises, reading no more than is there, and the
one message that says which files are expected where when they are missing (with the
torchvision download, where there is a network).

The formats have a module each: `idx` (MNIST-style IDX files), `cifar` (CIFAR-10 python-pickle
batches). Files are validated by format (magic number, header, size, shapes, label range), not by
checksum, so a small file set in the real format loads through the same code as the real one.
Every problem is a `DataError` whose message names the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from arnn.errors import UserError


class DataError(UserError):
    """A dataset that cannot be found or read; the message says what and where."""


def read_up_to(f: Any, size: int) -> bytes:
    """At most `size` bytes, in chunks: memory grows with the data present, never with a size
    a header claims."""
    chunks, left = [], size
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def download_or_explain(
    fetch: Callable[[], None], what: str, expected: list[str], where: str, download: bool,
    folders: list[Path],
) -> None:
    """Run `fetch` (a torchvision download) or stop with one message that says exactly which
    files are expected where, and how to point the runner at them. `folders`: those the
    download makes (parents first); a failed one leaves none of them behind empty."""
    hint = (
        f"{what}: files not found. Expected {', '.join(expected)} in {where}. "
        f"Put them there, or point data_dir=/path (or ARNN_DATA_DIR) at the folder holding them"
    )
    if not download:
        raise DataError(hint + " (dataset.download=false).")
    made = [folder for folder in folders if not folder.exists()]
    try:
        fetch()
    except Exception as e:  # noqa: BLE001 - any network failure ends the same way
        for folder in reversed(made):
            try:
                folder.rmdir()  # only if empty: a partial download is left to be looked at
            except OSError:
                pass
        raise DataError(f"{hint}. Download failed: {type(e).__name__}: {e}") from None
