"""One run directory: what to do with it (a pure plan from its previous record and checkpoint),
then load, build, fit and record.

Layout: results.json, checkpoints/last.pt, TensorBoard event files, the dataset's artifacts
(pMNIST: permutation.json), .hydra/ and the job log (train.log), the lock (.arnn.lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from arnn import host
from arnn.build import build
from arnn.checkpoint import BEST_CHECKPOINT, CHECKPOINT, load_checkpoint, max_checkpoint_bytes
from arnn.config import validate
from arnn.errors import ConfigError, UserError, invalid
from arnn.identity import check_same_run, fingerprint
from arnn.loop import Checkpoints, Hook, Loop
from arnn.monitor import Monitor, hparams_of
from arnn.points import seed_value
from arnn.preemption import SignalCatcher, hand_over
from arnn.results import ACCURACIES, RESULTS_FILE, RunResult, Status
from arnn.stability import stability_warning
from arnn.state import TrainingState
from arnn.storage import DirLock, Folder, check_run_dir, remove_stale_temporaries

log = logging.getLogger("arnn")


@dataclass(frozen=True)
class Skip:
    """Finished already (completed at these steps, or diverged): not trained again."""


@dataclass(frozen=True)
class Extend:
    """Completed with fewer steps: continue from its checkpoint."""

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
         run_dir: Path) -> Plan:
    """What a run asked for `steps` does in a directory holding `previous` (its results.json)
    and, if `has_checkpoint`, a checkpoint. Pure: reads and writes nothing."""
    if previous is not None and previous.status.finished and resume != "never":
        if previous.status is Status.DIVERGED or steps == previous.steps:
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


def record_failure(run_dir: Folder, error: BaseException, config: dict[str, Any],
                   loop: Loop | None = None) -> None:
    """The one way a failure is recorded: results.json `failed` with the error, the loop's
    record when the run had a state of its own, else one naming its settings. A write that
    fails is logged; the error the caller raises stays the one the user sees."""
    result = (loop.result(Status.FAILED, f"{type(error).__name__}: {error}") if loop is not None
              else RunResult.failed(config, error))
    try:
        result.write(run_dir)
    except UserError as write_error:
        log.error("%s", write_error)


@contextmanager
def failures_recorded(run_dir: Folder, loop: Loop) -> Iterator[None]:
    """Any exception inside leaves results.json `failed`, and goes on."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as e:
        record_failure(run_dir, e, loop.identity, loop)
        raise


def run(cfg: DictConfig, run_dir: str | Path, on_start: Callable[[Folder], None] | None = None,
        hooks: Iterable[Hook] = ()) -> float | None:
    """Train and evaluate one configuration in `run_dir`; returns the best validation accuracy
    (what a sweeper maximises: never a test number; None without a validation split).

    Bad values raise ConfigError before anything is written. The run holds the directory's lock
    while it works: a second process on it raises RunDirBusy and changes nothing. It then reads
    and checks everything it needs (record, dataset, checkpoint) before it takes the directory
    over: `on_start` (the Hydra entry writes .hydra/ then), the `running` record. A run refused
    before that leaves an existing record and checkpoint byte for byte as they were; in a new
    directory it records the failure so that a sweep lists the job. `hooks` are called after
    every step.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    if cfg.train.resume == "must" and not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"train.resume='must' but there is no checkpoint at "
                          f"{run_dir / CHECKPOINT}")
    with Folder(run_dir) as folder, DirLock(folder):
        for tmp in remove_stale_temporaries(run_dir):
            log.info("removed %s, left by a write that was killed", tmp)
        return _run_locked(cfg, folder, on_start or (lambda folder: None), hooks)


def _run_locked(cfg: DictConfig, folder: Folder, on_start: Callable[[Folder], None],
                hooks: Iterable[Hook]) -> float | None:
    identity, run_dir = fingerprint(cfg), folder.path
    previous = RunResult.read(run_dir)
    if previous is not None and previous.status.finished and cfg.train.resume != "never":
        check_same_run(run_dir / RESULTS_FILE, previous.config, identity)
    todo = plan(previous, (run_dir / CHECKPOINT).is_file(), cfg.train.steps, cfg.train.resume,
                run_dir)
    if isinstance(todo, Refuse):
        raise todo.error
    if isinstance(todo, Skip):
        log.info("%s: already %s, not trained again", run_dir, previous.status)
        return objective(previous)
    if isinstance(todo, Extend):
        log.info("%s: extending from %d to %d steps", run_dir, todo.from_steps, cfg.train.steps)
    try:
        loop, state = _prepare(cfg, run_dir, todo, identity, previous, hooks)
    except (Exception, KeyboardInterrupt) as e:
        # A new directory keeps the failure for sweeps to list (a bad value: the entry does).
        if previous is None and not isinstance(e, ConfigError):
            on_start(folder)
            record_failure(folder, e, identity)
        raise
    on_start(folder)
    checkpoints = Checkpoints(folder)
    with failures_recorded(folder, loop):
        if state is not None:
            checkpoints.reconcile(state, _max_bytes(loop, cfg))
        loop.result(Status.RUNNING).write(folder)
        result = _fit(loop, cfg, checkpoints)
    result.write(folder)
    _report_end(result)
    return objective(result)


def objective(result: RunResult) -> float | None:
    """What a sweeper maximises: the best validation accuracy, by the one rule of a seed's
    value (arnn.points): a run that completed counts it, one that diverged counts 0, so that a
    search learns to avoid its settings (a failed trial teaches Optuna's TPE nothing, and it
    proposes them again). None without a validation split."""
    return seed_value(result.status, result.best_val_accuracy) if result.num_val else None


def _prepare(cfg: DictConfig, run_dir: Path, todo: Plan, identity: dict[str, Any],
             previous: RunResult | None, hooks: Iterable[Hook]
             ) -> tuple[Loop, TrainingState | None]:
    """The loop, built (the dataset read) and, to continue, restored from the checkpoint (also
    returned); reads only."""
    loop = Loop(build(cfg), cfg, identity,
                requeues=previous.requeues if previous is not None else 0, hooks=hooks)
    _report_stability(loop, cfg)
    if not isinstance(todo, Resume | Extend):
        return loop, None
    path = run_dir / CHECKPOINT
    raw = load_checkpoint(path, _max_bytes(loop, cfg))
    check_same_run(path, raw.get("fingerprint", {}), identity)
    state = TrainingState.from_dict(path, raw, cfg.train.steps)
    loop.restore(path, state)
    log.info("resumed from %s at step %d", path, loop.step)
    changed = host.differences(state.host, host.describe(loop.backend))
    if changed:
        log.warning("%s was written on other terms (%s): the result will not be bit-identical "
                    "to an uninterrupted run's", path, "; ".join(changed))
    return loop, state


def _max_bytes(loop: Loop, cfg: DictConfig) -> int:
    return max_checkpoint_bytes(loop.model, loop.task.num_train, cfg.train.steps)


def _report_stability(loop: Loop, cfg: DictConfig) -> None:
    if loop.stability is None:
        return
    log.info("%s", loop.stability.line())
    warning = stability_warning(loop.model.cell, loop.stability, cfg.model.gamma,
                                cfg.model.sigma_w)
    if warning is not None:
        log.warning("%s", warning)


def _fit(loop: Loop, cfg: DictConfig, checkpoints: Checkpoints) -> RunResult:
    run_dir = checkpoints.run_dir
    with Monitor(run_dir, cfg.train.steps, loop.step) as monitor:
        with SignalCatcher() as signals:
            status = loop.fit(monitor, checkpoints, stop=signals.caught)
            if status is Status.INTERRUPTED:
                hand_over(loop, signals, run_dir)
        result = loop.result(status)
        monitor.hparams(hparams_of(cfg),
                        {f"hparams/{name}": getattr(result, name) or 0.0 for name in ACCURACIES},
                        loop.step)
    return result


def _report_end(result: RunResult) -> None:
    if result.status is Status.DIVERGED:
        log.warning("diverged at step %s: %s (last finite loss %s); best test accuracy %s",
                    result.diverged_step, result.divergence, result.last_finite_loss,
                    result.best_test_accuracy)
    else:
        log.info("completed %d steps: test accuracy %.4f (best %.4f), %d parameters, %.1f s",
                 result.steps, result.test_accuracy, result.best_test_accuracy, result.params,
                 result.wall_time_s)
    if result.best_val_accuracy is not None:
        log.info("best validation accuracy %.4f at step %d: test accuracy there %.4f (%s)",
                 result.best_val_accuracy, result.best_val_step,
                 result.test_accuracy_at_best_val, BEST_CHECKPOINT)
