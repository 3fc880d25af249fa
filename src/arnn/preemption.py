"""Stopping a run cleanly: stop signals become a flag the loop reads at a step boundary, and
after the checkpoint the run hands over to SLURM (submitit requeues it) or exits.

SIGUSR1 / SIGUSR2 are SLURM's warning before a time limit or preemption (submitit forwards them
and installs its own requeue handler, remembered here and called once the checkpoint is
written); SIGTERM and SIGINT (Ctrl-C) stop a run outside SLURM. Under submitit, SIGTERM goes to
submitit's handler as before (it ignores it: SLURM sends it to every process at the end). A
second Ctrl-C stops at once.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from pathlib import Path
from typing import Any, NoReturn

from arnn.record import Recorder
from arnn.results import Status
from arnn.storage import shown

log = logging.getLogger("arnn")


class SignalCatcher:
    """`with SignalCatcher() as signals:` ... `signals.caught` says whether a stop came."""

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SignalCatcher:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._catch)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def caught(self) -> bool:
        return self.signum is not None

    def framework_handler(self, signum: int) -> Any:
        """The handler a framework (submitit) installed for this signal, else None."""
        handler = self.previous.get(signum)
        return handler if callable(handler) and handler is not signal.default_int_handler else None

    def _catch(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM and self.framework_handler(signum) is not None:
            self.previous[signum](signum, frame)
        elif self.signum is None:
            self.signum = signum
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt


def hand_over(recorder: Recorder, signals: SignalCatcher) -> NoReturn:
    """After a stop signal, with the checkpoint written: under SLURM (submitit's handler for the
    signal) record the requeue and let submitit requeue the job and exit; otherwise record the
    interruption and exit with 128 + the signal's number."""
    signum = signals.signum
    assert signum is not None
    name, step = signal.Signals(signum).name, recorder.loop.step
    handler = signals.framework_handler(signum)
    if handler is not None:
        recorder.requeues += 1
        recorder.write(Status.REQUEUED)
        log.warning("%s at step %d: checkpoint saved; handing over to submitit to requeue "
                    "(requeue %d)", name, step, recorder.requeues)
        handler(signum, None)  # requeues the job and exits
        raise RuntimeError(f"{name}: submitit's handler returned without requeueing the job")
    recorder.write(Status.INTERRUPTED)
    log.warning("%s at step %d: checkpoint saved in %s; %s continues the run from there", name,
                step, shown(recorder.folder.path), _same_command())
    raise SystemExit(128 + signum)


def _same_command() -> str:
    """How to continue: the same command, or for a sweep's job the same sweep command in the
    same sweep directory (a sweep directory named by the clock is a new one each time)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"the same sweep command with hydra.sweep.dir={HydraConfig.get().sweep.dir}"
    return "the same command"


def uses_submitit(args: list[str], config_dir: Path) -> bool:
    """Whether the command line picks a launcher that runs on submitit (submitit's own, or one
    of conf/hydra/launcher/ that names it, itself or through the launchers it includes)."""

    def submitit(name: str, depth: int = 0) -> bool:
        file = config_dir / "hydra" / "launcher" / f"{name}.yaml"
        if name.startswith("submitit") or depth > 5 or not file.is_file():
            return name.startswith("submitit")
        text = file.read_text()
        included = re.findall(r"^\s*-\s*(\w+)\s*$", text, flags=re.MULTILINE)
        return "submitit" in text or any(submitit(n, depth + 1) for n in included)

    return any(key == "hydra/launcher" and submitit(value)
               for key, _, value in (arg.lstrip("+").partition("=") for arg in args))


def quiet_sacct_polls() -> None:
    """On a SLURM cluster without accounting every poll of submitit's launcher fails in sacct
    with a warning (and sacct's own line on stderr), every few seconds. Warn once, then stop
    polling sacct: once it fails, submitit learns that a job ended from its result file alone."""
    try:
        from submitit.slurm.slurm import SlurmInfoWatcher
    except ImportError:
        return
    update = SlurmInfoWatcher.update
    if getattr(update, "quiet", False):
        return

    def quiet_update(self: Any) -> None:
        if getattr(self, "accounting_off", False):
            return
        self._output = None
        update(self)
        if self._output is None:  # sacct failed: submitit logged it
            self.accounting_off = True
            logging.getLogger("submitit").warning(
                "sacct does not answer (accounting off on this cluster?): job states now come "
                "from result files alone; this warning is not repeated")

    quiet_update.quiet = True  # type: ignore[attr-defined]
    SlurmInfoWatcher.update = quiet_update  # type: ignore[method-assign]
