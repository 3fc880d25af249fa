"""The study's storage: Optuna's journal (one JSON object per operation and line) in the sweep
directory, `<sweep dir>/optuna.journal`, read within bounds and appended through the sweep
directory the sweeper holds (arnn.storage.Folder): never through a link, never into a file with a
second name. The sweeper owns the directory (its lock), so it is the journal's only writer.

Every line is checked before Optuna replays it: a known operation with the keys and types it
needs, values of the metric's range (an accuracy: 0 to 1), a study that maximises. A last line
a kill tore (no newline, not whole JSON) is dropped; a whole one that only lacks its newline is
kept. Anything else is refused in one line naming the line.
"""

from __future__ import annotations

import json
import math
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
MAXIMIZE = 2  # optuna.study.StudyDirection.MAXIMIZE
TRIAL_STATES = range(5)  # optuna.trial.TrialState: RUNNING .. WAITING
_INT, _STR, _DICT, _LIST = (int,), (str,), (dict,), (list,)
# op_code -> the keys it must have and their types (Optuna's JournalOperation)
OPERATIONS: dict[int, dict[str, tuple[type, ...]]] = {
    0: {"study_name": _STR, "directions": _LIST},  # CREATE_STUDY
    1: {"study_id": _INT},  # DELETE_STUDY
    2: {"study_id": _INT, "user_attr": _DICT},  # SET_STUDY_USER_ATTR
    3: {"study_id": _INT, "system_attr": _DICT},  # SET_STUDY_SYSTEM_ATTR
    4: {"study_id": _INT},  # CREATE_TRIAL
    5: {"trial_id": _INT, "param_name": _STR, "param_value_internal": (int, float),
        "distribution": _STR},  # SET_TRIAL_PARAM
    6: {"trial_id": _INT, "state": _INT},  # SET_TRIAL_STATE_VALUES
    7: {"trial_id": _INT, "step": _INT, "intermediate_value": (int, float)},
    8: {"trial_id": _INT, "user_attr": _DICT},  # SET_TRIAL_USER_ATTR
    9: {"trial_id": _INT, "system_attr": _DICT},  # SET_TRIAL_SYSTEM_ATTR
}


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


def _typed(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


def _in_range(value: Any, low: float, high: float) -> bool:
    return _typed(value, (int, float)) and math.isfinite(value) and low <= value <= high


def operation_problem(log: Any, value_range: tuple[float, float]) -> str | None:
    """Why `log` is no operation of a study the sweeper writes, or None."""
    if not isinstance(log, dict) or not _typed(log.get("op_code"), _INT):
        return "not an operation (an object with an integer op_code)"
    needs = OPERATIONS.get(log["op_code"])
    if needs is None:
        return f"op_code {log['op_code']} is no operation of Optuna's journal"
    for key, kinds in {"worker_id": _STR, **needs}.items():
        if not _typed(log.get(key), kinds):
            return f"op_code {log['op_code']} needs {key} ({kinds[0].__name__})"
    if log["op_code"] == 0 and log["directions"] != [MAXIMIZE]:
        return f"the study's directions are {log['directions']!r:.40}; this sweep maximises"
    if log["op_code"] == 6 and log["state"] not in TRIAL_STATES:
        return f"trial state {log['state']} is no state of a trial"
    values = [log.get("intermediate_value"), log.get("value"), *(log.get("values") or [])]
    if log.get("values") is not None and not isinstance(log["values"], list):
        return "values must be a list"
    bad = [v for v in values if v is not None and not _in_range(v, *value_range)]
    if bad:
        return f"value {bad[0]!r:.30} is outside the metric's range {value_range}"
    return None


class FolderJournal(BaseJournalBackend):
    """Optuna's journal backend over a file of a held folder."""

    def __init__(self, folder: Folder, value_range: tuple[float, float],
                 name: str = JOURNAL_FILE) -> None:
        self.path, self.value_range = folder.path / name, value_range
        self._fd = folder.open_own(name, os.O_RDWR | os.O_APPEND)
        try:
            self._logs = self._read_all()
        except StudyError:
            self.close()
            raise

    def _read_all(self) -> list[dict[str, Any]]:
        size = os.fstat(self._fd).st_size
        if size > MAX_JOURNAL_BYTES:
            raise StudyError(f"{self.path}: {size} bytes, more than the {MAX_JOURNAL_BYTES} a "
                             "study's journal may have")
        data = os.pread(self._fd, size, 0)
        lines = data.split(b"\n")
        if lines[-1] and _parse(lines[-1]) is None:  # torn by a kill: dropped
            os.ftruncate(self._fd, len(data) - len(lines[-1]))
            lines[-1] = b""
        elif lines[-1]:  # whole, only its newline missing: kept, the newline added
            os.write(self._fd, b"\n")
        logs = []
        for number, line in enumerate(filter(None, lines), start=1):
            log = _parse(line)
            problem = operation_problem(log, self.value_range)
            if problem is not None:
                raise StudyError(f"{self.path}: line {number}: {problem}; move the file away to "
                                 "start a fresh study")
            logs.append(log)
        return logs

    @property
    def logs(self) -> list[dict[str, Any]]:
        return self._logs

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


def _parse(line: bytes) -> Any:
    """The JSON value of a journal line, None when it is not one (too long, not JSON, NaN)."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        return json.loads(line, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None


def _refuse(name: str) -> None:
    raise ValueError(f"{name} in a journal")
