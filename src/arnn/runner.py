"""The training loop: one run of one configuration, from a composed config to results.json.

Run directory layout: results.json, checkpoints/last.pt, TensorBoard event files, the dataset's
artifacts (pMNIST: permutation.json) and Hydra's .hydra/ and job log.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from arnn.checkpoint import CheckpointError, check_compatible, load_checkpoint, save_atomic
from arnn.config import ConfigError, resolve_device, validate
from arnn.data import DataError, EpochSampler, SequenceTask, build_task
from arnn.data.tasks import DATASET_SETTINGS, DATASETS
from arnn.figures import gradient_flow, plot_gradient_flow
from arnn.models import CELLS, SequenceClassifier, build_cell, count_parameters
from arnn.monitor import Monitor
from arnn.optimizers import OPTIMIZERS, build_optimizer
from arnn.recurrence import resolve_backend
from arnn.results import FINISHED, RESULTS_FILE, ResultsError, RunResult
from arnn.stability import (
    StabilityReport,
    eigenvalues,
    euler_rho,
    stability_report,
    stability_warning,
)
from arnn.storage import RunDirBusy, RunDirLock, WriteError

log = logging.getLogger("arnn")

# Errors whose message is the whole story for the user (no traceback needed).
USER_ERRORS = (ConfigError, DataError, CheckpointError, ResultsError, RunDirBusy, WriteError)
CHECKPOINT = Path("checkpoints") / "last.pt"


def config_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The settings a run's numbers depend on; a run directory refuses a different one.
    train.steps is not among them: a larger count extends a run from its checkpoint."""
    data = OmegaConf.to_container(cfg, resolve=True)
    train = data["train"]
    return {
        "model": data["model"],
        "dataset": {k: v for k, v in data["dataset"].items()
                    if k not in ("download", "path", "paper_steps")},
        "optimizer": data["optimizer"],
        "train": {k: train[k] for k in ("batch_size", "grad_clip")},
        "seed": data["seed"],
    }


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def _comparable(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint without the settings its model, optimizer and dataset do not have (older
    versions recorded values for them, e.g. eps for the LSTM), nor train.steps (fingerprints
    before runs could be extended) and dataset.paper_steps."""
    out = dict(fingerprint)
    for key, registry, common in (("model", CELLS, ("name", "hidden_size")),
                                  ("optimizer", OPTIMIZERS, ("name", "lr", "weight_decay")),
                                  ("dataset", DATASETS, None)):
        node = out.get(key)
        if not isinstance(node, dict) or node.get("name") not in registry:
            continue
        entry = registry[node["name"]]
        if key == "model":
            keep = set(common) | set(entry.hyperparameters)
        elif key == "optimizer":
            keep = set(common) | set(entry[1])
        else:
            keep = (set(node) - set(DATASET_SETTINGS) - {"paper_steps"}) | set(entry[2])
        out[key] = {k: v for k, v in node.items() if k in keep}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k != "steps"}
    return out


def _check_same_run(where: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    diff = _differences(_comparable(saved), _comparable(current))
    if diff:
        raise CheckpointError(
            f"{where} belongs to a run with another configuration ({'; '.join(diff[:3])}); "
            "it was left untouched: use another output directory, or train.resume=never "
            "to overwrite it"
        )


def build_model(cfg: DictConfig, task: SequenceTask, device: torch.device) -> SequenceClassifier:
    m = cfg.model
    options = {"eps": m.eps, "gamma": m.gamma, "sigma_w": m.sigma_w, "backend": m.backend}
    if m.backend is not None:
        options["backend"] = resolve_backend(m.backend, device)
    cell = build_cell(m.name, task.input_size, m.hidden_size, **options)
    return SequenceClassifier(cell, task.num_classes).to(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (what a weights-only load reads)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate(model: SequenceClassifier, task: SequenceTask, batch_size: int) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the whole test split."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=task.device)
    loss = torch.zeros((), dtype=torch.float64, device=task.device)
    for x, y in task.test_batches(batch_size):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=-1) == y).sum()
    model.train()
    return correct.item() / task.num_test, loss.item() / task.num_test


def recurrent_spectrum(model: SequenceClassifier, seq_len: int) -> dict[str, float]:
    """Largest real part and modulus of the recurrent matrix's eigenvalues, and the Euler
    stability figures rho and log10(rho^T) (arnn.stability)."""
    matrix = model.cell.recurrent_matrix()
    mu = None if matrix is None else eigenvalues(matrix)
    if mu is None:
        return {}
    out = {"recurrent/max_real_eig": mu.real.max().item(),
           "recurrent/max_abs_eig": mu.abs().max().item()}
    eps = getattr(model.cell, "eps", None)
    if eps is not None:
        report = StabilityReport(euler_rho(mu, eps), seq_len)
        out["recurrent/euler_rho"] = report.euler_rho
        out["recurrent/log10_growth"] = report.log10_growth
    return out


class SignalCatcher:
    """Turns a stop signal into a flag that the loop reads at the next step boundary, where it
    checkpoints before anything else happens (a signal never interrupts a write).

    SIGUSR1 / SIGUSR2 are SLURM's warning before a time limit or preemption (submitit forwards
    them and installs its own requeue handler, remembered here and called once the checkpoint is
    written); SIGTERM and SIGINT (Ctrl-C) stop a run outside SLURM. Under submitit, SIGTERM goes
    to submitit's handler as before (it ignores it: SLURM sends it to every process at the end).
    A second Ctrl-C stops at once.
    """

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


class Trainer:
    """Holds everything a run needs and everything a checkpoint must restore."""

    def __init__(self, cfg: DictConfig, run_dir: Path, fingerprint: dict[str, Any]) -> None:
        self.cfg, self.run_dir, self.fingerprint = cfg, run_dir, fingerprint
        self.device = torch.device(resolve_device(cfg.device))
        seed_everything(cfg.seed)
        self.task = build_task(cfg.dataset, Path(cfg.data_dir).expanduser(), self.device)
        self.task.seed(cfg.seed)
        self.model = build_model(cfg, self.task, self.device)
        self.optimizer = build_optimizer(cfg.optimizer, self.model.parameters())
        self.sampler = EpochSampler(
            self.task.num_train, cfg.train.batch_size, cfg.seed, self.device
        )
        self.step = 0
        self.diverged_step: int | None = None
        self.divergence: str | None = None  # why the run diverged
        self.last_finite_loss: float | None = None
        self.best: float | None = None
        self.last: float | None = None
        self.evaluations: list[list[float]] = []
        self.wall_time_s = 0.0
        self.requeues = 0
        self.stability = stability_report(self.model.cell, self.task.seq_len)
        self.signals: SignalCatcher | None = None
        self._session_start = time.perf_counter()
        self._reset_window()

    # --- state -----------------------------------------------------------------------------
    def _reset_window(self, rows: torch.Tensor | None = None, examples: int = 0) -> None:
        """Per-step (loss, grad norm, correct predictions) since the last log line, written
        into a device buffer: ordinary steps never wait for the device. Restored rows (a
        resumed window) leave room for a full window after them."""
        restored = 0 if rows is None else len(rows)
        self.window = torch.zeros(self.cfg.train.log_every + restored, 3, device=self.device)
        if rows is not None:
            self.window[: len(rows)] = rows.to(self.device)
        self.win_examples = examples
        self.win_start, self.win_start_step = time.perf_counter(), self.step - restored

    def _window_rows(self) -> torch.Tensor:
        """The current window's rows, read back to the host (one synchronisation)."""
        return self.window[: self.step - self.win_start_step].cpu()

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "task": self.task.state_dict(),
            "rng": _rng_state(),
            "best": self.best,
            "last": self.last,
            "evaluations": self.evaluations,
            "wall_time_s": self.elapsed(),
            "last_finite_loss": self.last_finite_loss,
            "window": (self._window_rows(), self.win_examples),
        }

    def load_state_dict(self, path: Path, state: dict[str, Any]) -> None:
        check_compatible(path, state["model"], self.model)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.task.load_state_dict(state["task"])
        _set_rng_state(state["rng"])
        self.step, self.best, self.last = state["step"], state["best"], state["last"]
        self.evaluations = state["evaluations"]
        self.wall_time_s = state["wall_time_s"]
        self.last_finite_loss = state["last_finite_loss"]
        self._session_start = time.perf_counter()
        self._reset_window(*state["window"])

    def elapsed(self) -> float:
        return self.wall_time_s + time.perf_counter() - self._session_start

    def checkpoint(self) -> None:
        save_atomic(self.state_dict(), self.run_dir / CHECKPOINT)

    # --- training --------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns the (detached) loss without reading it back."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.train.grad_clip
        if clip is None:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        self.optimizer.step()
        loss = loss.detach()
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == y).sum(dtype=torch.float32)
            row = self.window[self.step - self.win_start_step]
            torch.stack((loss, grad_norm, correct), out=row)
        self.win_examples += len(y)
        self.step += 1
        return loss

    def diverged(self) -> bool:
        """Whether the window holds a loss or gradient norm that is not finite, or its mean loss
        is above train.max_loss (reads the window back; called at log, evaluation and
        checkpoint steps only). Records the step, the reason and the last finite loss."""
        rows = self._window_rows()
        finite = torch.isfinite(rows[:, :2]).all(dim=1)
        bad = (~finite).nonzero()
        good = rows[: int(bad[0]) if len(bad) else len(rows), 0]
        if len(good):
            self.last_finite_loss = float(good[-1])
        if len(bad):
            self.diverged_step = self.win_start_step + int(bad[0]) + 1
            self.divergence = f"loss or gradient norm not finite at step {self.diverged_step}"
            return True
        max_loss = self.cfg.train.max_loss
        if max_loss is not None and len(rows) and (mean := float(rows[:, 0].mean())) > max_loss:
            self.diverged_step = self.step
            self.divergence = (f"mean training loss {mean:.3g} over steps {self.win_start_step + 1}"
                               f"-{self.step} > train.max_loss={max_loss:g}")
            return True
        return False

    def log_window(self, monitor: Monitor) -> None:
        rows = self._window_rows()
        steps_done = len(rows)
        if steps_done == 0:
            return
        now = time.perf_counter()
        loss, grad_norm, correct = rows.sum(dim=0).tolist()
        stats = {
            "train/loss": loss / steps_done,
            "train/accuracy": correct / max(self.win_examples, 1),
            "train/grad_norm": grad_norm / steps_done,
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/steps_per_s": steps_done / max(now - self.win_start, 1e-9),
        }
        monitor.scalars(self.step, stats)
        monitor.progress(
            self.step,
            f"step {self.step}/{self.cfg.train.steps} loss {stats['train/loss']:.4f} "
            f"acc {stats['train/accuracy']:.3f} grad_norm {stats['train/grad_norm']:.3g} "
            f"{stats['train/steps_per_s']:.1f} it/s, "
            f"{_duration((self.cfg.train.steps - self.step) / stats['train/steps_per_s'])} left",
            {"loss": f"{stats['train/loss']:.3f}", "acc": f"{stats['train/accuracy']:.3f}"},
        )
        self._reset_window()

    def run_evaluation(self, monitor: Monitor) -> None:
        accuracy, loss = evaluate(self.model, self.task, self.cfg.train.eval_batch_size)
        self.last = accuracy
        self.best = accuracy if self.best is None else max(self.best, accuracy)
        self.evaluations.append([self.step, accuracy])
        # The spectrum needs a host eigensolver (tens of ms at n=256): done at evaluations,
        # where it is small beside the evaluation itself, not at every log line.
        monitor.scalars(
            self.step,
            {"test/accuracy": accuracy, "test/loss": loss,
             **recurrent_spectrum(self.model, self.task.seq_len)},
        )
        if self.cfg.train.gradient_flow:
            x, y = next(self.task.test_batches(32))
            norms = gradient_flow(self.model, x, y)
            fig = plot_gradient_flow({self.cfg.model.name: norms}, f"step {self.step}")
            monitor.writer.add_figure("gradient_flow", fig, self.step)
        monitor.progress(
            self.step,
            f"eval step {self.step}: test accuracy {accuracy:.4f} (best {self.best:.4f}) "
            f"test loss {loss:.4f}",
        )

    def fit(self, monitor: Monitor) -> str:
        """Train up to train.steps; returns 'completed', 'diverged', or 'stopped' (a stop signal
        came: the state at the step boundary after it is checkpointed)."""
        train = self.cfg.train
        self.task.save_artifacts(self.run_dir)
        if self.step >= train.steps:  # train.steps=0, or killed after the final checkpoint
            if not self.evaluations:
                self.run_evaluation(monitor)
            return "completed"
        while self.step < train.steps:
            self.train_step(*self.task.train_batch(self.sampler.next()))
            step = self.step
            at_end = step == train.steps
            do_log = at_end or step % train.log_every == 0
            do_eval = at_end or step % train.eval_every == 0
            stop = not at_end and self.signals is not None and self.signals.signum is not None
            do_ckpt = at_end or stop or step % train.checkpoint_every == 0
            if (do_log or do_eval or do_ckpt) and self.diverged():
                self.log_window(monitor)
                return "diverged"  # the last checkpoint keeps the last finite state
            if do_log:
                self.log_window(monitor)
            if do_eval:
                self.run_evaluation(monitor)
            if do_ckpt:
                self.checkpoint()
            monitor.advance(step)
            if stop:
                return "stopped"
        return "completed"

    def result(self, status: str, error: str | None = None) -> RunResult:
        cfg = self.cfg
        diverged = status == "diverged"
        return RunResult(
            status=status,
            model=cfg.model.name,
            dataset=cfg.dataset.name,
            optimizer=cfg.optimizer.name,
            test_accuracy=self.last,
            best_test_accuracy=self.best,
            params=count_parameters(self.model),
            steps=self.step,
            wall_time_s=round(self.elapsed(), 3),
            hidden_size=cfg.model.hidden_size,
            device=str(self.device),
            backend=getattr(self.model.cell, "backend", None),
            train_limit=cfg.dataset.train_limit,
            test_limit=cfg.dataset.test_limit,
            num_train=self.task.num_train,
            num_test=self.task.num_test,
            diverged_step=self.diverged_step if diverged else None,
            divergence=self.divergence if diverged else None,
            last_finite_loss=self.last_finite_loss,
            error=error,
            requeues=self.requeues,
            euler_rho=None if self.stability is None else self.stability.euler_rho,
            log10_growth=None if self.stability is None else self.stability.log10_growth,
            evaluations=self.evaluations,
            config=self.fingerprint,
        )


def _duration(seconds: float) -> str:
    """1h05m, 4m10s, 12s."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The flattened hyperparameters shown in TensorBoard's HParams tab."""
    return {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "hidden_size": cfg.model.hidden_size,
        "eps": cfg.model.eps,
        "gamma": cfg.model.gamma,
        "sigma_w": cfg.model.sigma_w,
        "seed": cfg.seed,
    }


def _hand_over(trainer: Trainer, run_dir: Path) -> None:
    """After a stop signal, with the checkpoint written: under SLURM (submitit's handler for the
    signal) record the requeue and let submitit requeue the job and exit; otherwise record the
    interruption and exit with 128 + the signal's number."""
    signum = trainer.signals.signum
    name = signal.Signals(signum).name
    handler = trainer.signals.framework_handler(signum)
    if handler is not None:
        trainer.requeues += 1
        trainer.result("requeued").write(run_dir)
        log.warning("%s at step %d: checkpoint saved; handing over to submitit to requeue "
                    "(requeue %d)", name, trainer.step, trainer.requeues)
        handler(signum, None)  # requeues the job and exits
        raise RuntimeError(f"{name}: submitit's handler returned without requeueing the job")
    trainer.result("interrupted").write(run_dir)
    log.warning("%s at step %d: checkpoint saved; start the same command again to resume",
                name, trainer.step)
    raise SystemExit(128 + signum)


def run(cfg: DictConfig, run_dir: str | Path, on_start: Callable[[], None] | None = None) -> float:
    """Train and evaluate one configuration in `run_dir`; returns the best test accuracy (the
    sweep objective; 0.0 when there was no evaluation).

    Bad values raise ConfigError before anything is written. The run holds the directory's lock
    while it works: a second process on it raises RunDirBusy and changes nothing. A directory
    whose results.json says completed or diverged is not trained again; one with a checkpoint
    resumes from it (train.resume). Any exception after that leaves results.json with status
    'failed' (when it can still be written). `on_start` is called once the run owns the
    directory and its config is accepted, before anything else is written there (the Hydra
    entry writes .hydra/ then, so a refused process never overwrites a running job's record).
    """
    validate(cfg)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if cfg.train.resume == "must" and not ckpt_path.is_file():
        raise ConfigError(f"train.resume='must' but there is no checkpoint at {ckpt_path}")
    with RunDirLock(run_dir):
        return _run_locked(cfg, run_dir, on_start)


def _run_locked(
    cfg: DictConfig, run_dir: Path, on_start: Callable[[], None] | None
) -> float:
    fingerprint = config_fingerprint(cfg)
    previous = RunResult.read(run_dir)
    resume = cfg.train.resume
    ckpt_path = run_dir / CHECKPOINT
    if previous is not None and previous.status in FINISHED and resume != "never":
        _check_same_run(run_dir / RESULTS_FILE, previous.config, fingerprint)
        steps = cfg.train.steps
        if previous.status == "diverged" or steps == previous.steps:
            log.info("%s: already %s, not trained again", run_dir, previous.status)
            return previous.best_test_accuracy or 0.0
        if steps < previous.steps:
            raise ConfigError(
                f"train.steps={steps} is invalid: {run_dir} already trained {previous.steps} "
                f"steps; ask for {previous.steps} or more to extend it, or use another directory"
            )
        if not ckpt_path.is_file():
            raise ConfigError(
                f"train.steps={steps} cannot extend {run_dir}: it has no {CHECKPOINT} to "
                "continue from"
            )
        log.info("%s: extending from %d to %d steps", run_dir, previous.steps, steps)
    trainer: Trainer | None = None
    monitor: Monitor | None = None
    try:
        state = None
        if resume != "never" and ckpt_path.is_file():
            state = load_checkpoint(ckpt_path)
            _check_same_run(ckpt_path, state.get("fingerprint", {}), fingerprint)
        if on_start is not None:
            on_start()
        trainer = Trainer(cfg, run_dir, fingerprint)
        if trainer.stability is not None:
            log.info("%s", trainer.stability.line())
            warning = stability_warning(trainer.model.cell, trainer.stability, cfg.model.gamma,
                                        cfg.model.sigma_w)
            if warning is not None:
                log.warning("%s", warning)
        if state is not None:
            trainer.load_state_dict(ckpt_path, state)
            log.info("resumed from %s at step %d", ckpt_path, trainer.step)
        trainer.requeues = previous.requeues if previous is not None else 0
        trainer.result("running").write(run_dir)
        monitor = Monitor(run_dir, cfg.train.steps, trainer.step)
        with SignalCatcher() as trainer.signals:
            status = trainer.fit(monitor)
            if status == "stopped":
                _hand_over(trainer, run_dir)
        result = trainer.result(status)
        monitor.hparams(
            hparams_of(cfg),
            {
                "hparams/test_accuracy": result.test_accuracy or 0.0,
                "hparams/best_test_accuracy": result.best_test_accuracy or 0.0,
            },
            trainer.step,
        )
    except (Exception, KeyboardInterrupt) as e:
        error = f"{type(e).__name__}: {e}"
        if trainer is not None:
            failed = trainer.result("failed", error)
        else:
            failed = RunResult(
                status="failed", model=cfg.model.name, dataset=cfg.dataset.name,
                optimizer=cfg.optimizer.name, error=error, config=fingerprint,
            )
        try:
            failed.write(run_dir)
        except WriteError as write_error:
            log.error("%s", write_error)
        raise
    finally:
        if monitor is not None:
            monitor.close()
    result.write(run_dir)
    if status == "diverged":
        log.warning(
            "diverged at step %s: %s (last finite loss %s); best test accuracy %s",
            result.diverged_step, result.divergence, result.last_finite_loss,
            result.best_test_accuracy,
        )
    else:
        log.info(
            "completed %d steps: test accuracy %.4f (best %.4f), %d parameters, %.1f s",
            result.steps, result.test_accuracy, result.best_test_accuracy, result.params,
            result.wall_time_s,
        )
    return result.best_test_accuracy or 0.0
