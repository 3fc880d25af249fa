"""Optuna's ask-and-tell loop over Hydra's launcher, with pruning by run extension.

Each batch of `n_jobs` trials is asked of the study at once and launched as one batch (one job
per trial and seed). Without a pruner a trial trains to train.steps. With one, it trains to the
budgets min_steps, min_steps * eta, ... train.steps one after the other: each budget relaunches
the trial's jobs in their own directories with the larger train.steps, so the runner extends
them from their checkpoints (bit-identical to training to that count at once), and the trial
reports its score there (`trial.report`); when the pruner says so (`trial.should_prune`) it
stops, its records marked `pruned` (arnn_optuna_sweeper._trials).

The study is kept in the sweep directory (`_journal`) with its identity (`_study`): running the
same command again adds `n_trials` trials, trials a killed sweep left running are told FAIL
first, and a command of other settings is refused. The grid sampler ends the sweep when its
grid is used up.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from arnn.errors import invalid
from arnn.storage import Folder, shown
from arnn.sweeps import RungSweeper, budgets, owned, save_multirun

from ._journal import FolderJournal, StudyError, refuse_an_old_study
from ._study import (
    METRIC_RANGE,
    check_settings,
    first_budget,
    identity,
    make_pruner,
    make_sampler,
    override_value,
    search_space,
    study_name,
)
from ._trials import TrialRunner


class OptunaSweeperImpl(RungSweeper):
    """The sweeper's logic over the shared rung machinery (arnn.sweeps.RungSweeper)."""

    who, tag = "the Optuna sweeper", "optuna"

    def __init__(self, **settings: Any) -> None:
        self.s = settings
        self.params = settings.get("params")

    @property
    def extends_runs(self) -> bool:
        return self.s["pruner"] != "none"  # without a pruner each trial trains straight

    def sweep(self, arguments: list[str]) -> list[Any]:
        check_settings(self.s)
        if not self.config.dataset.val_size:
            raise invalid("dataset.val_size", self.config.dataset.val_size, "the search "
                          "maximises the best validation accuracy: hold some out (> 0)")
        space, fixed = search_space(self.overrides(arguments))
        final = self.final_steps()
        ladder = budgets(first_budget(self.s, final), self.s["eta"], final) \
            if self.s["pruner"] != "none" else [final]
        with owned(self.config.hydra.sweep.dir) as folder:
            refuse_an_old_study(folder.path)
            save_multirun(folder, self.config)
            journal = FolderJournal(folder, METRIC_RANGE)
            try:
                name = study_name(folder, identity(self.s, space, fixed, ladder),
                                  [log["study_name"] for log in journal.logs
                                   if log["op_code"] == 0], self.s["study_name"])
                runner = TrialRunner(self, folder.path, fixed, ladder, self.s["seeds"])
                return self._optimize(journal, name, space, runner, folder)
            finally:
                journal.close()

    def _open_study(self, journal: FolderJournal, name: str, ladder: list[int]
                    ) -> optuna.Study:
        try:
            return optuna.create_study(
                study_name=name, storage=optuna.storages.JournalStorage(journal),
                direction=self.s["direction"], pruner=make_pruner(self.s, ladder[-1]),
                load_if_exists=True)
        except (AssertionError, KeyError, ValueError, TypeError, IndexError) as e:
            raise StudyError(f"{journal.path} cannot be replayed ({type(e).__name__}: {e}); "
                             "move it away to start a fresh study") from None

    def _optimize(self, journal: FolderJournal, name: str,
                  space: dict[str, BaseDistribution], runner: TrialRunner,
                  folder: Folder) -> list[Any]:
        study = self._open_study(journal, name, runner.ladder)
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL)
            print(f"[optuna] trial #{stale.number} was left running by a sweep that was "
                  "stopped: told FAIL", flush=True)
        study.sampler = make_sampler(self.s, space, len(study.trials))
        for settings in self.s.get("enqueue") or []:
            unknown = set(settings) - set(space)
            if unknown:
                raise invalid("hydra.sweeper.enqueue", dict(settings),
                              f"{', '.join(sorted(unknown))} is not in the search space")
            study.enqueue_trial(dict(settings), skip_if_exists=True)
        trained = failed = asked = 0
        while asked < self.s["n_trials"]:
            trials = self._ask(study, space, min(self.s["n_jobs"], self.s["n_trials"] - asked))
            if not trials:
                print(f"[optuna] the grid is used up after {len(study.trials)} trials",
                      flush=True)
                break
            asked += len(trials)
            steps, batch_failed = runner.run(study, trials)
            trained, failed = trained + steps, failed + batch_failed
            if failed > self.s["max_failure_rate"] * asked:
                print(f"[optuna] {failed} trial(s) failed, more than max_failure_rate="
                      f"{self.s['max_failure_rate']}: stopping the study", flush=True)
                break
        self._summary(study, trained, runner.ladder[-1], folder)
        return runner.returns

    def _ask(self, study: optuna.Study, space: dict[str, BaseDistribution], count: int
             ) -> list[Any]:
        """Up to `count` new trials; fewer when a grid sampler's grid is used up."""
        trials = []
        for _ in range(count):
            sampler = study.sampler
            if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
                break
            trials.append(study.ask(space))
        return trials

    def _summary(self, study: optuna.Study, trained: int, final: int, folder: Folder) -> None:
        jobs = self.s["n_trials"] * len(self.s["seeds"] or [None])
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = "none completed" if not complete else (
            f"best trial #{study.best_trial.number}: {study.best_value:.4f} with "
            + " ".join(f"{k}={override_value(v)}" for k, v in study.best_params.items()))
        print(f"[optuna] {len(study.trials)} trials in the study; this command trained "
              f"{trained} steps, {trained / (jobs * final):.1%} of {jobs} job(s) x {final}; "
              f"{best}; results in {shown(folder.path)} (tables: arnn-collect "
              f"{shown(folder.path)})", flush=True)
