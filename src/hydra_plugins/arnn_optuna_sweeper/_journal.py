"""The study's storage: Optuna's journal (one JSON object per operation and line) in the sweep
directory, `<sweep dir>/optuna.journal`, read within bounds and appended through the sweep
directory the sweeper holds (arnn.storage.Folder): never through a link, never into a file with a
second name. The sweeper owns the directory (its lock), so it is the journal's only writer; a
line torn by a kill is dropped when the study is next opened."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from arnn.errors import UserError
from arnn.storage import Folder

JOURNAL_FILE = "optuna.journal"
OLD_STUDY = "optuna.db"  # the SQLite study of Hydra's Optuna sweeper (Optuna 2)
MAX_JOURNAL_BYTES = 64 << 20  # a study of 10,000 trials is a few MB
MAX_LINE_BYTES = 1 << 20


class StudyError(UserError):
    """A study the sweeper cannot use; the message names the file and what to do."""


def refuse_an_old_study(sweep_dir: Path) -> None:
    """A sweep directory holding the old plugin's optuna.db is refused; the file is not read,
    nor opened by SQLite (a hostile database runs its triggers when written)."""
    old = sweep_dir / OLD_STUDY
    if os.path.lexists(old):
        raise StudyError(
            f"{old} is a study of Hydra's old Optuna sweeper (SQLite, Optuna 2), which arnn's "
            "sweeper does not read: start a fresh study with another hydra.sweep.dir, or move "
            f"{OLD_STUDY} away (the trials' directories are answered from their records when "
            "the new study proposes their settings again)")


class FolderJournal(BaseJournalBackend):
    """Optuna's journal backend over a file of a held folder."""

    def __init__(self, folder: Folder, name: str = JOURNAL_FILE) -> None:
        self.path = folder.path / name
        self._fd = folder.open_own(name, os.O_RDWR | os.O_APPEND)
        self._logs = self._read_all()

    def _read_all(self) -> list[dict[str, Any]]:
        size = os.fstat(self._fd).st_size
        if size > MAX_JOURNAL_BYTES:
            raise StudyError(f"{self.path}: {size} bytes, more than the {MAX_JOURNAL_BYTES} a "
                             "study's journal may have")
        data = os.pread(self._fd, size, 0)
        whole = data[:data.rfind(b"\n") + 1]  # a line torn by a kill ends without a newline
        if len(whole) < len(data):
            os.ftruncate(self._fd, len(whole))
        logs = []
        for number, line in enumerate(whole.splitlines(), start=1):
            try:
                log = json.loads(line, parse_constant=_refuse) if len(line) <= MAX_LINE_BYTES \
                    else None
            except (ValueError, RecursionError):
                log = None
            if not (isinstance(log, dict) and isinstance(log.get("op_code"), int)):
                raise StudyError(f"{self.path}: line {number} is not an operation of an Optuna "
                                 "journal; move the file away to start a fresh study")
            logs.append(log)
        return logs

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        os.write(self._fd, data)
        os.fsync(self._fd)
        self._logs.extend(logs)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _refuse(name: str) -> None:
    raise ValueError(f"{name} in a journal")
