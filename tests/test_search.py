"""Model-based search: arnn's Optuna sweeper (hydra/sweeper=optuna) over Optuna >= 4: search
spaces in Hydra's syntax, TPE / random / grid samplers, pruning by run extension, a study kept in
the sweep directory's journal and resumed by the same command."""

from __future__ import annotations

import json
import re
from importlib import metadata

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from packaging.requirements import Requirement
from packaging.version import Version

from arnn.identity import fingerprint
from arnn.results import RunResult, Status, evaluation_summary
from arnn.sweeps import RungSweeper, budgets
from hydra_plugins.arnn_optuna_sweeper._study import dirname, search_space
from hydra_plugins.arnn_optuna_sweeper._trials import TrialRunner, value_at
from tests.fixtures import ROOT, SMALL, compose_cfg, fake_job, job_return, run_cli


def test_the_search_extra_installs_beside_sqlalchemy_2():
    """The extra asks only for Optuna >= 4, and what is installed from it is that recent."""
    extra = [Requirement(r) for r in metadata.requires("arnn")
             if "extra == \"search\"" in r or "extra == 'search'" in r]
    assert [r.name for r in extra] == ["optuna"] and str(extra[0].specifier) == ">=4"
    assert Version(metadata.version("optuna")) >= Version("4")
    assert Version(metadata.version("sqlalchemy")) >= Version("2")
    assert "hydra-optuna-sweeper" not in {d.metadata["Name"] for d in metadata.distributions()}


def _parsed(arguments):
    return OverridesParser.create().parse_overrides(arguments)


def _rung_sweeper(launcher=None, params=()):
    """The shared rung machinery over a stand-in of Hydra's basic sweeper."""
    class Basic:
        hydra_context = type("Context", (), {"config_loader": None})()

        def _parse_config(self):
            return list(params)

    sweeper = RungSweeper()
    sweeper.basic, sweeper.launcher = Basic(), launcher
    return sweeper


def test_search_spaces_in_hydras_syntax():
    space, fixed = search_space(_parsed(["optimizer=choice(adam,sgd)", "optimizer.lr=tag(log, "
                                         "interval(0.0001, 1.0))",
                                         "model.eps=interval(0.01, 0.1)",
                                         "model.hidden_size=range(16, 64, 16)",
                                         "model.sigma_w=0,1,2", "seed=3"]))
    assert space["optimizer"] == CategoricalDistribution(["adam", "sgd"])
    assert space["optimizer.lr"] == FloatDistribution(0.0001, 1.0, log=True)
    assert space["model.eps"] == FloatDistribution(0.01, 0.1)
    assert space["model.hidden_size"] == IntDistribution(16, 64, step=16)
    assert space["model.sigma_w"] == CategoricalDistribution([0, 1, 2])
    assert fixed == ["seed=3"]
    with pytest.raises(Exception, match="train.steps=10,20 is invalid"):
        _rung_sweeper().overrides(["train.steps=10,20"])


@pytest.mark.parametrize("space", sorted(p.stem for p in (ROOT / "conf/hparams_search").glob(
    "*.yaml")))
def test_every_search_space_shipped_parses(space):
    """What the sweeper parses before its first trial, for each conf/hparams_search file (the
    LSTM's once held `choice(null, ...)`, which Hydra's grammar refuses)."""
    group = "[appendix_c,log_lr]" if space == "log_lr" else space  # log_lr goes on appendix_c
    cfg = compose_cfg("hydra/sweeper=optuna", f"+hparams_search={group}",
                      return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    distributions, fixed = search_space(_parsed([f"{k}={v}" for k, v in params.items()]))
    assert set(distributions) | {f.split("=")[0] for f in fixed} == set(params)
    if space == "lstm_baseline":
        clip = distributions["train.grad_clip"]
        assert clip.choices == ("null", 1.0, 5.0)
        assert compose_cfg("train.grad_clip=null").train.grad_clip is None  # as launched


def test_budgets_directories_and_the_value_at_a_budget(tmp_path):
    assert budgets(100, 3, 800) == [100, 300, 800] and budgets(800, 3, 800) == [800]
    assert budgets(800 // 9, 3, 800) == [88, 264, 800]  # the default first budget: steps / eta^2
    assert dirname(["optimizer.lr=0.1", "model.eps=0.01"]) == "model.eps=0.01,optimizer.lr=0.1"
    assert re.fullmatch(r"[\w.,=+-]+", dirname(["a=b/c'd", "x=" + "y" * 400]))
    assert len(dirname(["x=" + "y" * 400])) <= 150
    job = fake_job(tmp_path, 0, steps=300, evaluations=[[100, 0.5, 0.6], [300, 0.4, 0.8]])
    result = RunResult.read(job)
    assert (value_at(result, 100), value_at(result, 200), value_at(result, 300)) == (
        0.6, 0.6, 0.8)


# A small space in which lr=1e12 diverges (train.max_loss) and the rest trains.
SEARCH = ("-m", "hydra/sweeper=optuna", "+hparams_search=appendix_c", "model=arnn", *SMALL,
          "train.steps=40", "train.eval_every=20", "train.log_every=10",
          "hydra.sweeper.n_trials=12", "optimizer.lr=choice(0.1,1e12)",
          "model.sigma_w=choice(0,1)")
PRUNED = ("hydra.sweeper.pruner=hyperband", "hydra.sweeper.min_steps=5")


def _trials(sweep):
    """(state, value) of each trial, from the study's journal (Optuna's own reader)."""
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    (study,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    return [(t.state.name, t.value) for t in trials]


def _records(sweep):
    return {p.parent: RunResult.read(p.parent) for p in sweep.glob("*/results.json")}


def test_settings_proposed_again_are_judged_where_their_record_ends(tmp_path):
    """A trial whose settings were trained to the end by an earlier trial is answered at the
    end (its record's value, COMPLETE), not pruned at a budget it passed long ago (which had
    told the study PRUNED and COMPLETE for the same settings)."""
    import optuna

    cfg = compose_cfg(*SMALL, "optimizer.lr=0.1")
    evaluations = [[10, 0.5, 0.3], [30, 0.5, 0.4], [90, 0.5, 0.8]]
    RunResult(Status.COMPLETED, "gated_arnn", "digits", "sgd", num_val=10, steps=90,
              evaluations=evaluations, config=fingerprint(cfg),
              **evaluation_summary(evaluations)).write(tmp_path / dirname(["optimizer.lr=0.1"]))
    launched = []

    class Launcher:
        def launch(self, batch, initial_job_idx):
            launched.extend(batch)
            return [job_return(cfg) for _ in batch]

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.HyperbandPruner(
        min_resource=10, max_resource=90, reduction_factor=3))
    runner = TrialRunner(_rung_sweeper(Launcher()), tmp_path, [], [10, 30, 90], None)
    trial = study.ask({"optimizer.lr": CategoricalDistribution([0.1])})
    assert runner.run(study, [trial]) == (0, 0)  # nothing trained, nothing failed
    assert launched == []  # its record answers: not launched again
    assert study.trials[0].state.name == "COMPLETE" and study.trials[0].value == 0.8


@pytest.mark.slow
def test_a_pruned_tpe_study_survives_divergence_and_grows_on_a_rerun(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(*SEARCH, *PRUNED, f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(sweep)
    assert len(trials) == 12 and {s for s, _ in trials} <= {"COMPLETE", "PRUNED", "FAIL"}
    records = _records(sweep)
    statuses = {r.status.value for r in records.values()}
    assert "diverged" in statuses and "completed" in statuses  # the study went on
    pruned = [r for r in records.values() if r.status.value == "pruned"]
    assert pruned and all(r.steps < 40 for r in pruned)  # the record says so
    assert sum(s == "PRUNED" for s, _ in trials) >= 1
    trained = int(re.search(r"this command trained (\d+) steps", proc.stdout).group(1))
    assert trained < 12 * 40
    finished = {d: (d / "results.json").stat().st_mtime_ns for d, r in records.items()
                if r.status.value == "completed" and r.steps == 40}
    again = run_cli(*SEARCH, *PRUNED, f"hydra.sweep.dir={sweep}", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_trials(sweep)) == 24  # resumed: the study grew
    for d, mtime in finished.items():  # a finished trial proposed again was not retrained
        assert (d / "results.json").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_a_trial_that_diverges_scores_zero_and_seeds_make_one_trial(tmp_path):
    """lr=1e12 only, two seeds per trial: every trial diverges, scores 0 (not FAIL: TPE
    learns from it), and each trial is two jobs, one per seed."""
    sweep = tmp_path / "search"
    proc = run_cli(*SEARCH[:-2], "optimizer.lr=choice(1e12)", "model.sigma_w=choice(0,1)",
                   "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds=[0,1]",
                   f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _trials(sweep) == [("COMPLETE", 0.0), ("COMPLETE", 0.0)]
    seeds = sorted(r.config["seed"] for r in _records(sweep).values())
    assert seeds in ([0, 1], [0, 0, 1, 1])  # one or two distinct settings, each two seeds


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "grid"])
def test_random_and_grid_samplers(tmp_path, sampler):
    sweep = tmp_path / "search"
    proc = run_cli(*SEARCH[:-3], "hydra.sweeper.n_trials=4", f"hydra.sweeper.sampler={sampler}",
                   "optimizer.lr=choice(0.1,0.3)", "model.sigma_w=choice(0,1)",
                   f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [s for s, _ in _trials(sweep)] == ["COMPLETE"] * 4
    if sampler == "grid":  # every point of the 2 x 2 grid once
        assert len(_records(sweep)) == 4


@pytest.mark.slow
@pytest.mark.parametrize("case", ["old-study", "damaged-journal", "storage", "no-validation"])
def test_a_study_it_cannot_use_is_one_line(tmp_path, case):
    sweep = tmp_path / "search"
    sweep.mkdir()
    extra = []
    if case == "old-study":
        (sweep / "optuna.db").write_bytes(b"SQLite format 3\x00" + bytes(100))
    elif case == "damaged-journal":
        (sweep / "optuna.journal").write_text(json.dumps(CREATE) + '\nnot json\n')
    elif case == "storage":
        extra = ["hydra.sweeper.storage=sqlite:///x.db"]
    else:
        extra = ["dataset.val_size=0"]
    proc = run_cli(*SEARCH, *extra, f"hydra.sweep.dir={sweep}", timeout=900)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        proc.stderr[-3000:]
    assert {"old-study": "optuna.db is a study of Hydra's old Optuna sweeper",
            "damaged-journal": "optuna.journal: line 2: not an operation",
            "storage": "hydra.sweeper.storage='sqlite:///x.db' is invalid",
            "no-validation": "dataset.val_size=0 is invalid"}[case] in lines[0]
    assert not list(sweep.glob("*/results.json"))


CREATE = {"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [2]}
TRIAL = {"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_start": None}


def _journal(tmp_path, text):
    from arnn.storage import Folder
    from hydra_plugins.arnn_optuna_sweeper._journal import FolderJournal

    (tmp_path / "optuna.journal").write_text(text)
    with Folder(tmp_path) as folder:
        journal = FolderJournal(folder, (0.0, 1.0))
        logs = list(journal.read_logs(0))
        journal.append_logs([TRIAL])
        journal.close()
    return logs, (tmp_path / "optuna.journal").read_text().splitlines()


def test_a_torn_last_line_of_the_journal_is_dropped(tmp_path):
    logs, lines = _journal(tmp_path, json.dumps(CREATE) + '\n{"op_co')
    assert logs == [CREATE] and [json.loads(line) for line in lines] == [CREATE, TRIAL]


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path):
    """A completed trial's last operation, written whole but for its newline, is a result:
    kept (not cut away and the trial told FAIL)."""
    done = {"op_code": 6, "worker_id": "w", "trial_id": 0, "state": 1, "values": [0.9],
            "datetime_complete": None}
    logs, lines = _journal(tmp_path, "\n".join(json.dumps(x) for x in (CREATE, TRIAL, done)))
    assert logs == [CREATE, TRIAL, done]
    assert [json.loads(line) for line in lines] == [CREATE, TRIAL, done, TRIAL]


@pytest.mark.parametrize("bad,why", [
    ({"op_code": 42, "worker_id": "w"}, "no operation"),
    ({"op_code": True, "worker_id": "w"}, "not an operation"),
    ({"op_code": 6, "worker_id": "w", "state": 1, "values": [0.5]}, "needs trial_id"),
    ({"op_code": 6, "worker_id": "w", "trial_id": 0, "state": 1, "values": [5.0]}, "range"),
    ({**TRIAL, "value": 1e999}, "range"),
    ({**CREATE, "directions": [1]}, "maximises"),
])
def test_a_journal_line_no_study_of_ours_writes_is_refused(tmp_path, bad, why):
    from hydra_plugins.arnn_optuna_sweeper._journal import StudyError

    text = json.dumps(CREATE) + "\n" + json.dumps(bad).replace("Infinity", "1e999") + "\n"
    with pytest.raises(StudyError, match=f"line 2: .*{why}"):
        _journal(tmp_path, text)


def test_the_default_first_budget_is_the_steps_over_eta_squared():
    from hydra_plugins.arnn_optuna_sweeper._study import first_budget

    assert first_budget({"min_steps": None, "eta": 3}, 900) == 100
    assert first_budget({"min_steps": None, "eta": 2}, 1000) == 250
    assert first_budget({"min_steps": 7, "eta": 3}, 900) == 7


def test_every_journal_write_reaches_the_disk(tmp_path, monkeypatch):
    """Each appended operation is fsynced before the study goes on (a crash loses no told
    result)."""
    import os

    from arnn.storage import Folder
    from hydra_plugins.arnn_optuna_sweeper import _journal

    synced = []
    monkeypatch.setattr(_journal.os, "fsync", lambda fd: synced.append(fd))
    with Folder(tmp_path) as folder:
        journal = _journal.FolderJournal(folder, (0.0, 1.0))
        journal.append_logs([CREATE])
        assert synced == [journal._fd]
        journal.close()
    monkeypatch.setattr(_journal.os, "fsync", os.fsync)


class _Launcher:
    """Writes each job's record: validation accuracy `values[budget]` at every budget."""

    def __init__(self, sweep, cfg, values):
        self.sweep, self.cfg, self.values = sweep, cfg, values

    def launch(self, batch, initial_job_idx):
        for overrides in batch:
            name = next(o for o in overrides if o.startswith("hydra.sweep.subdir="))
            steps = int(next(o for o in overrides if o.startswith("train.steps=")).split("=")[1])
            evaluations = [[b, 0.5, v] for b, v in self.values.items() if b <= steps]
            RunResult(Status.COMPLETED, "gated_arnn", "digits", "sgd", num_val=10, steps=steps,
                      evaluations=evaluations, config=fingerprint(self.cfg),
                      **evaluation_summary(evaluations)).write(
                self.sweep / name.split("=", 1)[1].strip("'"))
        return [job_return(self.cfg) for _ in batch]


def test_a_pruned_trial_is_told_pruned_and_its_record_says_so(tmp_path):
    import optuna

    cfg = compose_cfg(*SMALL, "optimizer.lr=0.1")

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    launcher = _Launcher(tmp_path, cfg, {10: 0.3, 30: 0.4, 90: 0.8})
    runner = TrialRunner(_rung_sweeper(launcher), tmp_path, [], [10, 30, 90], None)
    trial = study.ask({"optimizer.lr": CategoricalDistribution([0.1])})
    assert runner.run(study, [trial]) == (10, 0)
    assert study.trials[0].state.name == "PRUNED"
    assert RunResult.read(tmp_path / dirname(["optimizer.lr=0.1"])).status is Status.PRUNED


def test_twins_in_one_batch_share_their_jobs(tmp_path):
    """The same settings proposed twice in one parallel batch: launched once, both trials told
    its value (not one of them `failed: the run directory is in use`)."""
    import optuna

    cfg = compose_cfg(*SMALL, "optimizer.lr=0.1")
    launched = []
    launcher = _Launcher(tmp_path, cfg, {90: 0.8})
    runner = TrialRunner(_rung_sweeper(launcher), tmp_path, [], [90], None)
    original = launcher.launch
    launcher.launch = lambda batch, initial_job_idx: launched.extend(batch) or original(
        batch, initial_job_idx)
    study = optuna.create_study(direction="maximize")
    space = {"optimizer.lr": CategoricalDistribution([0.1])}
    assert runner.run(study, [study.ask(space), study.ask(space)]) == (90, 0)
    assert len(launched) == 1
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 0.8)] * 2


def test_a_diverged_trial_is_told_at_once_and_not_launched_again(tmp_path, capsys):
    """A trial whose every seed diverged is final (0, said as `diverged`) at the first budget;
    settings proposed again whose record diverged are answered by it, unlaunched."""
    import optuna

    cfg = compose_cfg(*SMALL, "optimizer.lr=0.1")
    launched = []

    class Diverging:
        def launch(self, batch, initial_job_idx):
            launched.extend(batch)
            for overrides in batch:
                name = next(o for o in overrides if o.startswith("hydra.sweep.subdir="))
                RunResult(Status.DIVERGED, "gated_arnn", "digits", "sgd", num_val=10, steps=3,
                          config=fingerprint(cfg)).write(
                    tmp_path / name.split("=", 1)[1].strip("'"))
            return [job_return(cfg) for _ in batch]

    study = optuna.create_study(direction="maximize")
    runner = TrialRunner(_rung_sweeper(Diverging()), tmp_path, [], [10, 30, 90], None)
    space = {"optimizer.lr": CategoricalDistribution([0.1])}
    runner.run(study, [study.ask(space)])
    runner.run(study, [study.ask(space)])
    assert len(launched) == 1 and "train.steps=10" in launched[0]
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 0.0)] * 2
    assert capsys.readouterr().out.count("diverged (counts 0)") == 2


GRID_SEARCH = ("-m", "hydra/sweeper=optuna", "model=arnn", *SMALL, "train.steps=4",
               "train.eval_every=2", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=5",
               "optimizer.lr=choice(0.1,0.3)")


def test_a_new_study_is_named_after_its_directory(tmp_path):
    """Optuna's Hyperband puts a trial in a bracket by the study's name and the trial's number
    (its docs: give study_name for reproducible pruning), so a seeded study must not get a
    random name: two new studies in directories of one name get the same name, recorded."""
    from arnn.storage import Folder
    from hydra_plugins.arnn_optuna_sweeper._study import study_name

    names = [study_name(Folder(tmp_path / parent / "search"), {"space": {}}, [])
             for parent in ("a", "b")]
    assert names == ["search", "search"]
    assert json.loads((tmp_path / "a" / "search" / "study.json").read_text())["name"] == "search"


@pytest.mark.slow
def test_a_study_keeps_its_identity_and_its_grid_ends_cleanly(tmp_path):
    """The grid sampler's two points, asked for five trials: the sweep ends when the grid is
    used up (no error, then or on a rerun). The study's identity survives a copy of its
    directory (the copy continues it: no proposal replayed), and a command of another search
    space or direction over it is refused in one line, the journal as it was."""
    import shutil

    sweep = tmp_path / "grid"
    first = run_cli(*GRID_SEARCH, f"hydra.sweep.dir={sweep}", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "the grid is used up after 2 trials" in first.stdout
    assert [state for state, _ in _trials(sweep)] == ["COMPLETE", "COMPLETE"]
    assert len(_trials(sweep)) == 2 and json.loads((sweep / "study.json").read_text())["name"]
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    again = run_cli(*GRID_SEARCH, f"hydra.sweep.dir={copy}", timeout=900)
    assert again.returncode == 0 and "the grid is used up after 2 trials" in again.stdout
    assert len(_trials(copy)) == 2 and "to 4 steps" not in again.stdout  # nothing launched
    journal = (sweep / "optuna.journal").read_bytes()
    other = run_cli(*GRID_SEARCH[:-1], "optimizer.lr=choice(0.1,0.5)", f"hydra.sweep.dir={sweep}",
                    timeout=900)
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 1, other.stderr[-3000:]
    assert "holds a study of other settings (space:" in lines[0]
    assert (sweep / "optuna.journal").read_bytes() == journal


@pytest.mark.slow
def test_settings_enqueued_are_tried_first_and_once(tmp_path):
    """`hydra.sweeper.enqueue`: the preset (or any known point) is the study's first trial;
    the same command again does not try it twice; a key outside the space is one line."""
    sweep = tmp_path / "enqueued"
    args = (*GRID_SEARCH[:4], *SMALL, "train.steps=4", "train.eval_every=2",
            "hydra.sweeper.n_trials=1", "optimizer.lr=choice(0.1,0.3,0.5)",
            "+hydra.sweeper.enqueue=[{optimizer.lr: 0.3}]", f"hydra.sweep.dir={sweep}")
    first = run_cli(*args, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trial #0 optimizer.lr=0.3:" in first.stdout
    second = run_cli(*args, timeout=900)
    journal = (sweep / "optuna.journal").read_text()
    assert second.returncode == 0 and journal.count('"fixed_params"') == 1  # enqueued once
    bad = run_cli(*args[:-2], "+hydra.sweeper.enqueue=[{model.eps: 0.3}]",
                  f"hydra.sweep.dir={tmp_path / 'bad'}", timeout=900)
    assert bad.returncode == 2 and "model.eps is not in the search space" in bad.stderr
