"""A run's record, results.json: built in one place from its specification and the loop's
state, and written through the run directory held."""

from __future__ import annotations

from arnn.loop import Loop
from arnn.models import count_parameters
from arnn.results import RunResult, Status, evaluation_summary, stalled
from arnn.spec import RunSpec
from arnn.stability import StabilityReport
from arnn.storage import Folder


class Recorder:
    """Writes the run's results.json; `requeues` counts SLURM's stops over the run's life."""

    def __init__(self, spec: RunSpec, loop: Loop, folder: Folder, requeues: int,
                 stability: StabilityReport | None) -> None:
        self.spec, self.loop, self.folder = spec, loop, folder
        self.requeues, self.stability = requeues, stability

    def result(self, status: Status, error: str | None = None) -> RunResult:
        """The run's record now."""
        cfg, loop, task, stability = self.spec.cfg, self.loop, self.loop.task, self.stability
        diverged = loop.diverged if status is Status.DIVERGED else None
        return RunResult(
            status=status, model=cfg.model.name, dataset=cfg.dataset.name,
            optimizer=cfg.optimizer.name, **evaluation_summary(loop.evaluations),
            num_val=task.num_val, params=count_parameters(loop.model), steps=loop.step,
            wall_time_s=round(loop.elapsed(), 3), hidden_size=cfg.model.hidden_size,
            device=str(loop.parts.device), backend=self.spec.backend,
            train_limit=cfg.dataset.train_limit, test_limit=cfg.dataset.test_limit,
            num_train=task.num_train, num_test=task.num_test,
            diverged_step=diverged[0] if diverged else None,
            divergence=diverged[1] if diverged else None,
            stopped_early=stalled(loop.evaluations, cfg.train.patience)
            if status is Status.COMPLETED and loop.step < loop.steps else None,
            last_finite_loss=loop.last_finite_loss, error=error, requeues=self.requeues,
            euler_rho=None if stability is None else stability.euler_rho,
            log10_growth=None if stability is None else stability.log10_growth,
            evaluations=loop.evaluations, config=self.spec.identity,
            host=loop.hosts[-1], hosts=loop.hosts if len(loop.hosts) > 1 else None,
        )

    def write(self, status: Status, error: str | None = None) -> RunResult:
        result = self.result(status, error)
        result.write(self.folder)
        return result
