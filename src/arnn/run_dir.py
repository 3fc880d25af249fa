"""One run directory: what to do with it (a pure plan from its previous record and checkpoint),
then load, build, fit and record.

Layout: results.json, checkpoints/last.pt, TensorBoard event files, the dataset's artifacts
(pMNIST: permutation.json), .hydra/ and the job log (train.log), the lock (.arnn.lock).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arnn import host
from arnn.build import build
from arnn.checkpoint import BEST_CHECKPOINT, CHECKPOINT
from arnn.diagnostics import diagnostics
from arnn.errors import ConfigError, UserError, invalid
from arnn.identity import check_same_run
from arnn.inplace import LOCK_FILE, DirLock
from arnn.loop import Hook, Loop
from arnn.monitor import Monitor, hparams_of
from arnn.points import seed_value
from arnn.preemption import SignalCatcher, hand_over
from arnn.record import Recorder
from arnn.results import ACCURACIES, RESULTS_FILE, RunResult, Status, stalled
from arnn.spec import RunSpec
from arnn.stability import stability_report, stability_warning
from arnn.state import Checkpoints, TrainingState
from arnn.storage import Folder, check_run_dir, remove_stale_temporaries, shown

log = logging.getLogger("arnn")


@dataclass(frozen=True)
class Skip:
    """Finished already (completed at these steps, stopped early by a patience the run's
    still meets, or diverged): not trained again."""


@dataclass(frozen=True)
class Extend:
    """Completed with fewer steps (or stopped early by a smaller patience): continue from its
    checkpoint."""

    from_steps: int


@dataclass(frozen=True)
class Resume:
    """Stopped before the end: continue from its checkpoint."""


@dataclass(frozen=True)
class Fresh:
    """Nothing to continue (or train.resume=never): start at step 0."""


@dataclass(frozen=True)
class Refuse:
    error: ConfigError


Plan = Skip | Extend | Resume | Fresh | Refuse


def plan(previous: RunResult | None, has_checkpoint: bool, steps: int, resume: str,
         run_dir: Path, patience: int | None = None) -> Plan:
    """What a run asked for `steps` (stopping early after `patience` evaluations without a
    better validation accuracy) does in a directory holding `previous` (its results.json)
    and, if `has_checkpoint`, a checkpoint. Pure: reads and writes nothing."""
    if previous is not None and previous.status.finished and resume != "never":
        # stopped early by a patience this one has too: it would stop there again
        stays_stopped = (previous.stopped_early is not None and steps > previous.steps
                         and stalled(previous.evaluations, patience) is not None)
        if previous.status is Status.DIVERGED or steps == previous.steps or stays_stopped:
            return Skip()
        if steps < previous.steps:
            return Refuse(invalid("train.steps", steps, f"{run_dir} already trained "
                                  f"{previous.steps} steps; ask for {previous.steps} or more to "
                                  "extend it, or use another directory"))
        if not has_checkpoint:
            return Refuse(ConfigError(f"train.steps={steps} cannot extend {run_dir}: it has no "
                                      f"{CHECKPOINT} to continue from"))
        return Extend(previous.steps)
    return Resume() if resume != "never" and has_checkpoint else Fresh()


def record_failure(folder: Folder, error: BaseException, identity: dict[str, Any],
                   recorder: Recorder | None = None) -> None:
    """The one way a failure is recorded: results.json `failed` with the error, the loop's
    record when the run had a state of its own, else one naming its settings. A write that
    fails is logged; the error the caller raises stays the one the user sees."""
    error_text = f"{type(error).__name__}: {error}"
    result = (recorder.result(Status.FAILED, error_text) if recorder is not None
              else RunResult.failed(identity, error))
    try:
        result.write(folder)
    except UserError as write_error:
        log.error("%s", write_error)


@contextmanager
def failures_recorded(folder: Folder, recorder: Recorder) -> Iterator[None]:
    """Any exception inside leaves results.json `failed`, and goes on."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as e:
        record_failure(folder, e, recorder.spec.identity, recorder)
        raise


@dataclass
class Prepared:
    """A run built and, to continue, restored: everything it needs before it takes its
    directory over."""

    loop: Loop
    checkpoints: Checkpoints
    recorder: Recorder
    state: TrainingState | None  # the checkpoint's, when continuing


def run(spec: RunSpec, run_dir: str | Path, on_start: Callable[[Folder], None] | None = None,
        hooks: Iterable[Hook] = (), new_dir: bool = False) -> float | None:
    """Train and evaluate one configuration in `run_dir`; returns the best validation accuracy
    (what a sweeper maximises: never a test number; None without a validation split).

    The run holds the directory's lock while it works: a second process on it raises
    RunDirBusy and changes nothing. It then reads and checks everything it needs (record,
    dataset, checkpoint) before it takes the directory over: `on_start` (the Hydra entry writes
    .hydra/ then), the `running` record. A run refused before that leaves an existing record
    and checkpoint byte for byte as they were; in a new directory it records the failure so
    that a sweep lists the job, unless `new_dir` (the caller made the directory for this run:
    then the refusal removes it). `hooks` are called after every step.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    if spec.train.resume == "must" and not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"train.resume='must' but there is no checkpoint at "
                          f"{run_dir / CHECKPOINT}")
    taken: list[bool] = []

    def start(folder: Folder) -> None:
        taken.append(True)
        (on_start or (lambda folder: None))(folder)

    with Folder(run_dir) as folder, DirLock(folder):
        for tmp in remove_stale_temporaries(run_dir):
            log.info("removed %s, left by a write that was killed", tmp)
        try:
            return _run_locked(spec, folder, start, hooks, new_dir)
        except UserError:
            if new_dir and not taken:
                _remove_new_dir(folder)
            raise


def _remove_new_dir(folder: Folder) -> None:
    """A directory made for a run that was refused before it took it over: its lock and job
    log removed, then the directory if nothing else is in it."""
    for name in (LOCK_FILE, "train.log"):
        try:
            os.unlink(name, dir_fd=folder.fd)
        except FileNotFoundError:
            pass
    try:
        folder.path.rmdir()
    except OSError:
        pass


def _run_locked(spec: RunSpec, folder: Folder, on_start: Callable[[Folder], None],
                hooks: Iterable[Hook], new_dir: bool) -> float | None:
    run_dir, steps, resume = folder.path, spec.train.steps, spec.train.resume
    previous = RunResult.read(run_dir)
    if previous is not None and previous.status.finished and resume != "never":
        check_same_run(run_dir / RESULTS_FILE, previous.config, spec.identity)
    todo = plan(previous, (run_dir / CHECKPOINT).is_file(), steps, resume, run_dir,
                spec.train.patience)
    if isinstance(todo, Refuse):
        raise todo.error
    if isinstance(todo, Skip):
        log.info("%s: already %s at step %d, not trained again (train.resume=never trains it "
                 "anew; %s)", shown(run_dir), previous.status, previous.steps,
                 "a larger train.patience, or null, continues it" if previous.stopped_early
                 else "a larger train.steps extends it")
        _report_end(previous, run_dir)
        return objective(previous)
    if isinstance(todo, Extend):
        log.info("%s: extending from %d to %d steps", run_dir, todo.from_steps, steps)
    try:
        prepared = _prepare(spec, folder, todo, previous, hooks)
    except (Exception, KeyboardInterrupt) as e:
        # A new directory keeps the failure for sweeps to list (a bad value: the entry does).
        if previous is None and not new_dir and not isinstance(e, ConfigError):
            on_start(folder)
            record_failure(folder, e, spec.identity)
        raise
    on_start(folder)
    with failures_recorded(folder, prepared.recorder):
        if prepared.state is not None:
            prepared.checkpoints.reconcile(prepared.state)
        prepared.recorder.write(Status.RUNNING)
        prepared.loop.task.save_artifacts(folder)  # pMNIST: its permutation
        result = _fit(prepared, spec)
    result.write(folder)
    _report_end(result, run_dir)
    return objective(result)


def objective(result: RunResult) -> float | None:
    """What a sweeper maximises: the best validation accuracy, by the one rule of a seed's
    value (arnn.points): a run that completed counts it, one that diverged counts 0, so that a
    search learns to avoid its settings (a failed trial teaches Optuna's TPE nothing, and it
    proposes them again). None without a validation split."""
    return seed_value(result.status, result.best_val_accuracy) if result.num_val else None


def _prepare(spec: RunSpec, folder: Folder, todo: Plan, previous: RunResult | None,
             hooks: Iterable[Hook]) -> Prepared:
    """The run built (the dataset read) and, to continue, restored from its checkpoint; reads
    only."""
    parts = build(spec)
    loop = Loop(parts, spec, hooks, diagnostics(spec, parts.model, parts.task))
    stability = stability_report(parts.model.cell, parts.task.seq_len)
    _report_stability(stability, parts.model.cell, spec)
    checkpoints = Checkpoints(folder, parts.model, parts.task.num_train, spec.train.steps)
    recorder = Recorder(spec, loop, folder, previous.requeues if previous is not None else 0,
                        stability)
    if not isinstance(todo, Resume | Extend):
        return Prepared(loop, checkpoints, recorder, None)
    path = folder.path / CHECKPOINT
    state = checkpoints.load(spec.identity, spec.train.steps)
    loop.restore(path, state)
    log.info("resumed from %s at step %d", path, loop.step)
    changed = host.changed_terms(state.host, host.describe(spec.backend))
    if changed:
        log.warning("%s was written on other terms (%s): the result will not be bit-identical "
                    "to an uninterrupted run's", path, "; ".join(changed))
    return Prepared(loop, checkpoints, recorder, state)


def _report_stability(report: Any, cell: Any, spec: RunSpec) -> None:
    if report is None:
        return
    log.info("%s", report.line())
    warning = stability_warning(cell, report, spec.cfg.model.gamma, spec.cfg.model.sigma_w)
    if warning is not None:
        log.warning("%s", warning)


def _fit(prepared: Prepared, spec: RunSpec) -> RunResult:
    loop, recorder = prepared.loop, prepared.recorder
    with Monitor(recorder.folder, spec.train.steps, loop.step) as monitor:
        with SignalCatcher() as signals:
            status = loop.fit(monitor, prepared.checkpoints, stop=signals.caught)
            if status is Status.INTERRUPTED:
                hand_over(recorder, signals)
        result = recorder.result(status)
        monitor.hparams(hparams_of(spec.cfg),
                        {f"hparams/{name}": getattr(result, name) or 0.0 for name in ACCURACIES},
                        loop.step)
    return result


def _report_end(result: RunResult, run_dir: Path) -> None:
    if result.status is Status.DIVERGED:
        log.warning("diverged at step %s: %s (last finite loss %s); best test accuracy %s",
                    result.diverged_step, result.divergence, result.last_finite_loss,
                    result.best_test_accuracy)
    else:
        log.info("completed %d steps: test accuracy %.4f (best %.4f), %d parameters, %.1f s",
                 result.steps, result.test_accuracy, result.best_test_accuracy, result.params,
                 result.wall_time_s)
        if result.stopped_early:
            log.info("stopped early: %s", result.stopped_early)
    if result.best_val_accuracy is not None:
        log.info("best validation accuracy %.4f at step %d: test accuracy there %.4f (%s)",
                 result.best_val_accuracy, result.best_val_step,
                 result.test_accuracy_at_best_val, BEST_CHECKPOINT)
    log.info("results in %s", shown(run_dir))
