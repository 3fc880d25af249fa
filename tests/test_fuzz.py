"""Every reader of a file from elsewhere, fuzzed: valid, truncated, mutated and hostile files of
each format, each case in a forked child under a 500 MB memory cap and a 5 s limit (tests/fuzz.py).
A case must end as a user would want: read, or one `error:` line and exit 2; never a traceback,
a signal, or a finished record changed."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from arnn.checkpoint import CHECKPOINT
from arnn.data.cifar import read_cifar_batch
from arnn.data.idx import read_idx
from arnn.halving_record import HalvingRecord, read_halving, write_halving
from arnn.report.jobs import collect
from arnn.report.tables import markdown
from arnn.results import RunResult
from arnn.storage import Folder
from tests import fuzz
from tests.fixtures import (
    ROOT,
    SMALL,
    Payload,
    compose_cfg,
    fake_job,
    files_under,
    idx_bytes,
    read_checkpoint,
    run_config,
    write_cifar10,
)
from tests.fuzz import (
    APPENDS,
    EMPTY_LIST,
    MARK,
    NONE,
    POP,
    REDUCE,
    array,
    batch,
    by,
    dtype,
    g,
    get,
    i,
    in_child,
    int_list,
    put,
    s,
    tup,
)


def _special(path: Path, kind: str) -> Path:
    """A FIFO, a link to /dev/zero, a directory, or a sparse file of 5 GB, at `path`."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "dir":
        path.mkdir()
    else:
        with open(path, "wb") as f:
            f.truncate(5 << 30)
    return path


SPECIAL = ("fifo", "zero", "dir", "sparse")


# --- CIFAR-10 batches -------------------------------------------------------------------------

def _small_batch(n: int = 3) -> dict:
    rng = np.random.default_rng(0)
    return {b"batch_label": b"t", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"%d.png" % k for k in range(n)]}


def _shared_list_bomb(levels: int = 40) -> bytes:
    """A ~300-byte list whose elements share references: 2^40 leaves when walked."""
    ops = EMPTY_LIST + put(0) + POP
    for k in range(1, levels):
        ops += EMPTY_LIST + MARK + get(k - 1) + get(k - 1) + APPENDS + put(k) + POP
    return ops + get(levels - 1)


MARKER = Path("/tmp/arnn-fuzz-marker")


HOSTILE_BATCHES = {
    "crafted-dtype-elsize-0": batch(array((2, 3072), bytes(2 * 3072), dtype(
        state=tup(i(3), s("|"), NONE, NONE, NONE, i(0), i(1), i(0)))), int_list([1, 2])),
    "crafted-dtype-elsize-huge": batch(array((2, 3072), bytes(2), dtype(
        state=tup(i(3), s("|"), NONE, NONE, NONE, i(1 << 30), i(1), i(0)))), int_list([1, 2])),
    "crafted-dtype-fields": batch(array((1, 3072), bytes(3072), dtype(
        state=tup(i(3), s("|"), NONE, tup(s("a")), NONE, i(-1), i(-1), i(0)))), int_list([1])),
    "object-dtype": batch(array((1, 3072), bytes(3072), dtype("O8")), int_list([1])),
    "void-dtype": batch(array((1, 3072), bytes(3072), dtype("V8")), int_list([1])),
    "float-data": batch(array((1, 3072), bytes(8 * 3072), dtype("f8")), int_list([1])),
    "20000-images-in-1-byte": batch(array((20000, 3072), b"\x01"), int_list([1] * 3)),
    "10001-images-declared": batch(array((10001, 3072), bytes(3072)), int_list([1])),
    "stride-0-ndarray": batch(
        g("numpy", "ndarray") + tup(tup(i(20000), i(3072)), s("u1"), by(b"\x01"), i(0),
                                    tup(i(0), i(0))) + REDUCE, int_list([1])),
    "frombuffer-huge-shape": batch(
        g("numpy.core.numeric", "_frombuffer")
        + tup(by(b"\x01"), dtype(), tup(i(20000), i(3072)), s("C")) + REDUCE, int_list([1])),
    "labels-huge-int": batch(array((1, 3072), bytes(3072)),
                             EMPTY_LIST + MARK + b"\x8a\x10" + b"\xff" * 16 + APPENDS),
    "labels-strings": batch(array((1, 3072), bytes(3072)), EMPTY_LIST + MARK + s("1") + APPENDS),
    "labels-none": batch(array((1, 3072), bytes(3072)), NONE),
    "labels-fraction": batch(array((1, 3072), bytes(3072)),
                             EMPTY_LIST + MARK + b"G" + b"?\xf8\x00\x00\x00\x00\x00\x00" + APPENDS),
    "labels-negative": batch(array((1, 3072), bytes(3072)), int_list([-1])),
    "labels-too-few": batch(array((2, 3072), bytes(2 * 3072)), int_list([1])),
    "labels-shared-reference-bomb": batch(array((1, 3072), bytes(3072)), _shared_list_bomb()),
    "encode-a-shared-string-again-and-again": fuzz.PROTO + s("x" * (1 << 20)) + put(0) + b"".join(
        g("_codecs", "encode") + tup(get(0), s("latin1")) + REDUCE + POP for _ in range(2000)
    ) + b"." ,
    "memo-flood": fuzz.PROTO + b"".join(NONE + put(k) for k in range(61_000)) + b".",
    "operation-flood": fuzz.PROTO + (NONE + POP) * 300_000 + NONE + b".",
    "deep-marks": fuzz.PROTO + MARK * 300_000 + b".",
    "not-a-dict": fuzz.PROTO + int_list([1]) + b".",
    "missing-labels": fuzz.PROTO + fuzz.EMPTY_DICT + MARK + by(b"data")
    + array((1, 3072), bytes(3072)) + fuzz.SETITEMS + b".",
    "builtins-eval": fuzz.PROTO + g("builtins", "eval") + tup(s("1")) + REDUCE + b".",
    **{f"reduce-payload-protocol-{p}": pickle.dumps({b"data": Payload(MARKER)}, protocol=p)
       for p in range(6)},
}


def test_the_hand_built_batch_is_a_real_one(tmp_path):
    """The generators write what numpy writes: an unaltered hand-built batch reads."""
    path = tmp_path / "batch"
    path.write_bytes(batch(array((2, 3072), bytes(range(256)) * 24), int_list([3, 7])))
    images, labels = read_cifar_batch(path)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 7]
    assert images[0, 0, 1, 0] == 1  # channel-major rows: the second red pixel


@pytest.mark.parametrize("name", sorted(HOSTILE_BATCHES))
def test_hostile_cifar_batch(tmp_path, name):
    path = tmp_path / "data_batch_1"
    path.write_bytes(HOSTILE_BATCHES[name])
    outcome = in_child(lambda: read_cifar_batch(path))
    fuzz.expect(outcome, (2,), name)
    assert str(path) in outcome.output
    assert not MARKER.exists()


@pytest.mark.parametrize("kind", SPECIAL)
def test_cifar_batch_that_is_not_a_regular_file(tmp_path, kind):
    path = _special(tmp_path / "data_batch_1", kind)
    fuzz.expect(in_child(lambda: read_cifar_batch(path)), (2,), kind)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_fuzz_cifar_batches(tmp_path, protocol):
    data = pickle.dumps(_small_batch(), protocol=protocol)
    assert fuzz.fuzz_file(tmp_path, data, read_cifar_batch, protocol, 25) >= 20


# --- IDX files, plain and gzip ----------------------------------------------------------------

def _read_images(path: Path) -> np.ndarray:
    return read_idx(path, 3, (28, 28))


HOSTILE_IDX = {
    "no-images": idx_bytes((0, 28, 28)),
    "60001-images": idx_bytes((60001, 28, 28), b""),
    "2^31-images": idx_bytes((2**31, 28, 28), bytes(100)),
    "wrong-image-size": idx_bytes((2, 29, 28)),
    "one-byte-more": idx_bytes((2, 28, 28)) + b"\x00",
    "truncated-body": idx_bytes((2, 28, 28))[:-1],
    "labels-magic": idx_bytes((2,)),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", sorted(HOSTILE_IDX))
def test_hostile_idx(tmp_path, name, gz):
    import gzip

    path = tmp_path / ("images.gz" if gz else "images")
    data = HOSTILE_IDX[name]
    path.write_bytes(gzip.compress(data) if gz else data)
    fuzz.expect(in_child(lambda: _read_images(path)), (2,), name)


def test_idx_bombs(tmp_path):
    """1 MB of gzip expanding to 1 GiB behind a header of 60,000 images, and a sparse file of
    5 GB behind the same header: both read no more than the header announces, and refuse."""
    gz = tmp_path / "bomb.gz"
    gz.write_bytes(fuzz.gzip_bomb(idx_bytes((60000, 28, 28), b""), 1 << 30))
    assert gz.stat().st_size < 8 << 20
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.write(idx_bytes((60000, 28, 28), b""))
        f.truncate(5 << 30)
    for path, why in ((gz, "do not match its header"), (sparse, "more than the 47040016")):
        outcome = in_child(lambda p=path: _read_images(p))
        fuzz.expect(outcome, (2,), path.name)
        assert why in outcome.output


@pytest.mark.parametrize("kind", SPECIAL)
def test_idx_that_is_not_a_regular_file(tmp_path, kind):
    path = _special(tmp_path / "images", kind)
    fuzz.expect(in_child(lambda: _read_images(path)), (2,), kind)


@pytest.mark.parametrize("gz", [False, True])
def test_fuzz_idx(tmp_path, gz):
    import gzip

    data = idx_bytes((3, 28, 28), bytes(range(256)) * 9 + bytes(3 * 784 - 2304))

    def read(path: Path) -> np.ndarray:
        if gz:
            target = path.with_suffix(".gz")
            target.write_bytes(gzip.compress(path.read_bytes()))
            path = target
        return _read_images(path)

    assert fuzz.fuzz_file(tmp_path, data, read, int(gz), 25) >= 15


# --- results.json and halving.json ------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed digits run (4 steps): its results.json and checkpoint are the templates."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run_config(compose_cfg(*SMALL, "train.steps=4", "train.checkpoint_every=2"), run_dir)
    return run_dir


def _results(finished_run: Path, **changes) -> bytes:
    record = json.loads((finished_run / "results.json").read_text())
    return json.dumps({**record, **changes}).encode()


def _read_results(path: Path) -> RunResult:
    return RunResult.read(path.parent)


def test_fuzz_results(tmp_path, finished_run):
    data = (finished_run / "results.json").read_bytes()
    assert fuzz.fuzz_file(tmp_path, data, _read_results, 0, 30, "results.json") >= 15


HOSTILE_RESULTS = {
    "nested-100000-deep": lambda _: b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested-40-deep": lambda r: _results(r, config={"a": json.loads("[" * 40 + "]" * 40)}),
    "accuracy-as-string": lambda r: _results(r, test_accuracy="0.9"),
    "accuracy-1e999": lambda r: _results(r).replace(b'"test_accuracy": 0.',
                                                    b'"test_accuracy": 1e999, "x": 0.'),
    "accuracy-nan": lambda r: _results(r, test_accuracy=float("nan")),
    "accuracy-above-1": lambda r: _results(r, best_test_accuracy=1.5),
    "steps-as-string": lambda r: _results(r, steps="5"),
    "steps-negative": lambda r: _results(r, steps=-1),
    "steps-bool": lambda r: _results(r, steps=True),
    "evaluations-junk": lambda r: _results(r, evaluations=[[1, "x"]]),
    "config-not-a-dict": lambda r: _results(r, config=3),
    "status-unknown": lambda r: _results(r, status="done"),
    "model-missing": lambda r: json.dumps({"status": "completed"}).encode(),
    "a-list": lambda r: b"[]",
    "five-megabytes": lambda r: b'{"x": "' + b"a" * (5 << 20) + b'"}',
    "not-utf8": lambda r: b'{"x": "\xff"}',
    "steps-401-digits": lambda r: _results(r).replace(b'"steps": 4', b'"steps": ' + b"9" * 401),
    "accuracy-of-no-test-example": lambda r: _results(r, num_test=0),
    "steps-10^18": lambda r: _results(r, steps=10**18),
    "250000-evaluations": lambda r: _results(r, steps=300_000,
                                             evaluations=[[1, 0.5, 0.5]] * 250_000),
    "accuracy-not-its-evaluations": lambda r: _results(r, test_accuracy=1.0),
    "accuracy-without-evaluations": lambda r: _results(r, evaluations=[]),
    "evaluation-beyond-steps": lambda r: _results(
        r, evaluations=[[99, 0.5, 0.5]], test_accuracy=0.5, best_test_accuracy=0.5,
        val_accuracy=0.5, best_val_accuracy=0.5, best_val_step=99,
        test_accuracy_at_best_val=0.5),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_RESULTS))
def test_hostile_results(tmp_path, finished_run, name):
    (tmp_path / "results.json").write_bytes(HOSTILE_RESULTS[name](finished_run))
    outcome = in_child(lambda: RunResult.read(tmp_path))
    fuzz.expect(outcome, (2,), name)
    assert "results.json" in outcome.output


@pytest.mark.parametrize("kind", SPECIAL)
def test_results_that_is_not_a_regular_file(tmp_path, kind):
    _special(tmp_path / "results.json", kind)
    fuzz.expect(in_child(lambda: RunResult.read(tmp_path)), (2,), kind)


def _halving_record() -> dict:
    outcome = {"status": "completed", "metric": 0.5, "steps": 10}
    return {"version": 1, "metric": "test_accuracy", "eta": 3, "min_steps": 10,
            "budgets": [10, 30], "configs": [["model.eps=0.1"], ["model.eps=1.0"], ["lr=1"]],
            "rungs": [{"budget": 10, "jobs": [0, 1, 2], "done": True, "promoted": [1],
                       "outcomes": {"0": outcome, "1": outcome, "2": outcome}}]}


HOSTILE_HALVING = {
    "budgets-0": {"budgets": [0]},
    "budgets-empty": {"budgets": []},
    "budgets-string": {"budgets": "10"},
    "eta-1": {"eta": 1},
    "eta-float": {"eta": 2.5},
    "metric-number": {"metric": 3},
    "configs-of-numbers": {"configs": [[1], [2], [3]]},
    "rung-jobs-strings": {"rungs": [{"budget": 10, "jobs": ["a"]}]},
    "rung-job-out-of-range": {"rungs": [{"budget": 10, "jobs": [99]}]},
    "rung-outcome-metric-string": {"rungs": [{"budget": 10, "jobs": [0], "outcomes": {
        "0": {"status": "completed", "metric": "x", "steps": 1}}}]},
    "rung-outcome-steps-missing": {"rungs": [{"budget": 10, "jobs": [0], "outcomes": {
        "0": {"status": "completed", "metric": 0.1}}}]},
    "rung-promoted-out-of-range": {"rungs": [{"budget": 10, "jobs": [0], "promoted": [7]}]},
    "more-rungs-than-budgets": {"rungs": [{"budget": 10, "jobs": [0]}] * 3},
    "rung-not-a-dict": {"rungs": [3]},
    "rung-done-without-promoted": {"rungs": [{"budget": 10, "jobs": [0], "done": True,
                                              "outcomes": {}}]},
    "rung-done-without-outcomes": {"rungs": [{"budget": 10, "jobs": [0], "done": True,
                                              "promoted": []}]},
    "rung-without-budget": {"rungs": [{"jobs": [0], "done": False}]},
    "eta-401-digits": {"eta": 10**401},
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HALVING))
def test_hostile_halving(tmp_path, name):
    (tmp_path / "halving.json").write_text(json.dumps({**_halving_record(),
                                                       **HOSTILE_HALVING[name]}))
    outcome = in_child(lambda: read_halving(tmp_path))
    fuzz.expect(outcome, (2,), name)
    assert "halving.json" in outcome.output


def test_fuzz_halving(tmp_path):
    with Folder(tmp_path) as folder:
        write_halving(folder, HalvingRecord.from_json(_halving_record()))
    assert read_halving(tmp_path).to_json() == _halving_record()
    data = (tmp_path / "halving.json").read_bytes()
    refused = fuzz.fuzz_file(tmp_path, data, lambda p: read_halving(p.parent), 0, 30,
                             "halving.json")
    assert refused >= 15


# --- the collector: one damaged job is listed as failed, the others reported ------------------

@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory, finished_run) -> Path:
    """A sweep directory of three completed jobs (copies of one run) and its multirun.yaml."""
    sweep = tmp_path_factory.mktemp("sweep") / "sweep"
    for job in ("0", "1", "2"):
        shutil.copytree(finished_run, sweep / job)
        (sweep / job / ".hydra").mkdir(exist_ok=True)
        (sweep / job / ".hydra" / "config.yaml").write_text(
            "model:\n  name: arnn\ndataset:\n  name: digits\noptimizer:\n  name: sgd\n")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params: null\n  overrides:\n    task: [seed=0,1,2]\n")
    return sweep


RECORD = b'{"status": "completed", "model": "arnn", "dataset": "digits", "optimizer": "sgd"'
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))
DAMAGED_JOB_FILES = {
    "config-not-yaml": (".hydra/config.yaml", b"model: [unclosed\n  : :"),
    "config-alias-bomb": (".hydra/config.yaml", ALIAS_BOMB.encode()),
    "config-deep": (".hydra/config.yaml", b"[" * 20_000 + b"]" * 20_000),
    "config-a-list": (".hydra/config.yaml", b"- 1\n- 2\n"),
    "config-two-megabytes": (".hydra/config.yaml", b"x: " + b"a" * (2 << 20)),
    "results-accuracy-string": ("results.json", RECORD + b', "test_accuracy": "0.9"}'),
    "results-1e999": ("results.json", RECORD + b', "test_accuracy": 1e999}'),
    "results-deep": ("results.json", b"[" * 100_000 + b"]" * 100_000),
    "results-truncated": ("results.json", b'{"status": "comp'),
}
DAMAGED_SWEEP_FILES = {
    "multirun-range-10^12": ("multirun.yaml", b"hydra:\n  sweeper:\n    params:\n"
                             b"      seed: range(0,1000000000000)\n  overrides:\n    task: []\n"),
    "multirun-not-yaml": ("multirun.yaml", b"hydra: [\n"),
    "multirun-alias-bomb": ("multirun.yaml", ALIAS_BOMB.encode()),
    "halving-budgets-0": ("halving.json", json.dumps({**_halving_record(), "budgets": [0]})
                          .encode()),
    "multirun-doubling-interpolations": ("multirun.yaml", (
        "hydra:\n  sweeper:\n    params:\n      seed: ${l40}\n  overrides:\n    task: []\n"
        "l0: x\n" + "".join(f"l{k}: ${{l{k - 1}}}${{l{k - 1}}}\n" for k in range(1, 41))
    ).encode()),
}


def _forged(finished_run: Path) -> bytes:
    """A record that claims what no run writes: accuracy 1.0 on no test example, 10^18 steps,
    250,000 evaluations."""
    return _results(finished_run, test_accuracy=1.0, best_test_accuracy=1.0, num_test=0,
                    best_val_accuracy=1.0, steps=10**18, evaluations=[[1, 1.0, 1.0]] * 250_000)


def _with_config(finished_run: Path, **extra) -> bytes:
    record = json.loads((finished_run / "results.json").read_text())
    record["config"] = {**record["config"], **extra}
    return json.dumps(record).encode()


# Files a job may hold that must cost the collector little, and how the job is then listed.
BOUNDED_JOB_FILES = {
    "config-with-2000-extra-settings": (
        "results.json", lambda r: _with_config(r, **{f"extra_{k}": k for k in range(2000)}),
        "completed"),
    "quoted-brackets-in-config": (
        ".hydra/config.yaml", lambda r: b"note: '" + b"[" * 40 + b"'\nmodel:\n  name: arnn\n",
        "completed"),
    "forged-record": ("results.json", _forged, "failed"),
}


@pytest.mark.parametrize("name", sorted(BOUNDED_JOB_FILES))
def test_the_collector_costs_little_whatever_a_job_holds(tmp_path, sweep_template, finished_run,
                                                         name):
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_template, sweep)
    relative, data, status = BOUNDED_JOB_FILES[name]
    (sweep / "2" / relative).write_bytes(data(finished_run))

    def check() -> None:
        found = collect([sweep])
        text = markdown(found.jobs, found.missing, "best_val_accuracy")
        statuses = {job.path.name: job.status for job in found.jobs}
        assert statuses == {"0": "completed", "1": "completed", "2": status}, statuses
        assert "100.0%" not in text  # the forged accuracy is never chosen

    fuzz.expect(in_child(check), (0,), name)


def test_names_from_files_are_escaped_in_the_tables(tmp_path):
    """A dataset named with a table separator, a newline, HTML and a terminal escape: one cell,
    printable, no markup."""
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, dataset="a|b\n<script>\x1b[2J", evaluations=[[100, 0.5, 0.6]])
    fake_job(sweep, 1, status="failed", error="bad | \x1b[31mred\n<b>")
    found = collect([sweep])
    text = markdown(found.jobs, found.missing, "best_val_accuracy")
    assert "<script>" not in text and "<b>" not in text and "\x1b" not in text
    assert "a\\|b &lt;script&gt;\\x1b[2J" in text and "bad \\| \\x1b[31mred &lt;b&gt;" in text


def _collect_around_damage(sweep: Path, damaged_job: str | None) -> None:
    found = collect([sweep])
    text = markdown(found.jobs, found.missing, "test_accuracy", found.halving, found.notes)
    status = {job.path.name: job.status for job in found.jobs}
    if damaged_job is None:
        assert status == dict.fromkeys("012", "completed") and found.notes, (status, found.notes)
        assert "Sweep files not used" in text
    else:
        assert status == {"0": "completed", "1": "completed", damaged_job: "failed"}, status
        assert f"{sweep / damaged_job}: failed (ResultsError" in text


@pytest.mark.parametrize("name", sorted(DAMAGED_JOB_FILES) + sorted(DAMAGED_SWEEP_FILES))
def test_collector_reports_around_a_damaged_file(tmp_path, sweep_template, name):
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_template, sweep)
    relative, data = {**DAMAGED_JOB_FILES, **DAMAGED_SWEEP_FILES}[name]
    on_job = name in DAMAGED_JOB_FILES
    (sweep / ("2" if on_job else ".") / relative).write_bytes(data)
    damaged = "2" if on_job else None
    fuzz.expect(in_child(lambda: _collect_around_damage(sweep, damaged)), (0,), name)


@pytest.mark.slow
def test_arnn_collect_on_a_sweep_with_one_damaged_job_of_each_kind(tmp_path, sweep_template):
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_template, sweep)
    (sweep / "multirun.yaml").unlink()  # launched-job count unknown: no "missing" jobs
    damaged = {}
    for k, (name, (relative, data)) in enumerate(sorted(DAMAGED_JOB_FILES.items()), start=3):
        shutil.copytree(sweep / "0", sweep / str(k))
        (sweep / str(k) / relative).write_bytes(data)
        damaged[str(k)] = name
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "collect_results.py"),
                           str(sweep)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (sweep / "results.md").read_text()
    assert f"| 3 | 0 | 0 | {len(damaged)} | 0 | 0 | 0 | {3 + len(damaged)} |" in table
    for job, name in damaged.items():
        assert f"- {sweep / job}: failed (ResultsError: " in table, name
    rows = list(csv.DictReader(open(sweep / "results.csv")))
    assert sorted(r["status"] for r in rows) == ["completed"] * 3 + ["failed"] * len(damaged)


@pytest.mark.parametrize("kind", ("fifo", "zero"))
def test_collector_with_a_special_results_file(tmp_path, sweep_template, kind):
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_template, sweep)
    (sweep / "2" / "results.json").unlink()
    _special(sweep / "2" / "results.json", kind)
    fuzz.expect(in_child(lambda: _collect_around_damage(sweep, "2")), (0,), kind)


# --- checkpoints: a damaged one never costs the finished record -------------------------------

def _state_with(finished_run: Path, change) -> bytes:
    """The finished run's checkpoint with `change` made to its state, with a valid digest."""
    state = read_checkpoint(finished_run / CHECKPOINT)
    change(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return fuzz.with_digest(buffer.getvalue())


def _set(path: str, value):
    def change(state: dict) -> None:
        node, keys = state, path.split("/")
        for key in keys[:-1]:
            node = node[int(key) if isinstance(node, list | tuple) else key]
        node[keys[-1]] = value
    return change


def _weights_to(dtype_: torch.dtype):
    def change(state: dict) -> None:
        state["model"] = {k: v.to(dtype_) for k, v in state["model"].items()}
    return change


def _momentum_wrong_shape(state: dict) -> None:
    for buffers in state["optimizer"]["state"].values():
        buffers["momentum_buffer"] = torch.zeros(3)


def _param_groups(**values):
    def change(state: dict) -> None:
        for group in state["optimizer"]["param_groups"]:
            group.update(values)
    return change


def _delete(key: str):
    return lambda state: state.pop(key)


def _version_1(finished_run: Path) -> bytes:
    state = read_checkpoint(finished_run / CHECKPOINT)
    kind, keys, *rest = state["rng"]["numpy"]
    state["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), *rest)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _deflated_gigabyte(finished_run: Path) -> bytes:
    """A valid-digest checkpoint whose archive holds a 1 GiB tensor, deflated to ~1 MB."""
    archive = (finished_run / CHECKPOINT).read_bytes().split(b"\n", 1)[1]
    source, out = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
        with target.open(f"{source.namelist()[0].split('/')[0]}/data/999", "w",
                         force_zip64=True) as f:
            zeros = bytes(1 << 24)
            for _ in range(64):
                f.write(zeros)
    return fuzz.with_digest(out.getvalue())


HOSTILE_CHECKPOINTS = {
    "truncated": lambda r: (r / CHECKPOINT).read_bytes()[:-100],
    "flipped": lambda r: (lambda b: b[:500] + bytes([b[500] ^ 1]) + b[501:])(
        (r / CHECKPOINT).read_bytes()),
    "version-1-with-numpy": _version_1,
    "deflated-1-GiB-tensor": _deflated_gigabyte,
    "weights-int64": lambda r: _state_with(r, _weights_to(torch.int64)),
    "weights-float64": lambda r: _state_with(r, _weights_to(torch.float64)),
    "step-10^9": lambda r: _state_with(r, _set("step", 10**9)),
    "step-negative": lambda r: _state_with(r, _set("step", -1)),
    "step-string": lambda r: _state_with(r, _set("step", "4")),
    "no-optimizer": lambda r: _state_with(r, _delete("optimizer")),
    "no-rng": lambda r: _state_with(r, _delete("rng")),
    "momentum-wrong-shape": lambda r: _state_with(r, _momentum_wrong_shape),
    "sampler-order-not-a-permutation": lambda r: _state_with(
        r, _set("sampler/order", torch.zeros(5, dtype=torch.int64))),
    "sampler-position-huge": lambda r: _state_with(r, _set("sampler/position", 10**12)),
    "numpy-rng-junk": lambda r: _state_with(r, _set("rng/numpy", ("MT19937", torch.ones(3)))),
    "python-rng-junk": lambda r: _state_with(r, _set("rng/python", (3, (1, 2), None))),
    "torch-rng-junk": lambda r: _state_with(r, _set("rng/torch", torch.zeros(3).byte())),
    "window-junk": lambda r: _state_with(r, _set("window", (torch.zeros(5, 2), 0))),
    "evaluations-junk": lambda r: _state_with(r, _set("evaluations", [[1, 5.0]])),
    "best-model-string": lambda r: _state_with(r, _set("best_model", "0.9")),
    "best-model-other-shape": lambda r: _state_with(
        r, _set("best_model", {"head.weight": torch.zeros(3)})),
    "last-finite-loss-inf": lambda r: _state_with(r, _set("last_finite_loss", float("inf"))),
    "wall-time-negative": lambda r: _state_with(r, _set("wall_time_s", -1.0)),
    "fingerprint-not-a-dict": lambda r: _state_with(r, _set("fingerprint", [1])),
    "other-model": lambda r: _state_with(r, _set("model", {"x": torch.zeros(1)})),
    "window-examples-401-digits": lambda r: _state_with(
        r, lambda state: state.update(window=(state["window"][0], 10**401))),
    "last-finite-loss-401-digits": lambda r: _state_with(r, _set("last_finite_loss", 10**401)),
    "wall-time-401-digits": lambda r: _state_with(r, _set("wall_time_s", 10**401)),
    # the optimizer's settings are the configuration's, not the file's
    "optimizer-lr-50": lambda r: _state_with(r, _param_groups(lr=50.0)),
    "optimizer-maximize": lambda r: _state_with(r, _param_groups(maximize=True)),
    "optimizer-momentum-0.5": lambda r: _state_with(r, _param_groups(momentum=0.5)),
    # what computed it: a description arnn.host makes, not a 500 kB "one-line" warning
    "host-500-kB": lambda r: _state_with(r, _set("host", {"cpu": "x" * 500_000})),
    "host-escape-sequence": lambda r: _state_with(r, _set("host", {"cpu": "\x1b[2J"})),
    "host-unknown-key": lambda r: _state_with(r, _set("host", {"shell": "rm -rf"})),
    "hosts-not-a-list": lambda r: _state_with(r, _set("hosts", {"threads": 1})),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CHECKPOINTS))
def test_a_hostile_checkpoint_leaves_the_finished_run_as_it_was(tmp_path, finished_run, name):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / CHECKPOINT).write_bytes(HOSTILE_CHECKPOINTS[name](finished_run))
    before = files_under(tmp_path)
    cfg = compose_cfg(*SMALL, "train.steps=8", "train.checkpoint_every=2")  # extend 4 -> 8
    outcome = in_child(lambda: run_config(cfg, run_dir))
    fuzz.expect(outcome, (2,), name)
    assert str(run_dir / CHECKPOINT) in outcome.output
    assert files_under(tmp_path) == before  # byte for byte, and nothing new anywhere


def test_fuzz_checkpoints(tmp_path, finished_run):
    """The digest catches every change: no altered checkpoint loads, each refused in one line."""
    data = (finished_run / CHECKPOINT).read_bytes()
    refused = fuzz.fuzz_file(tmp_path, data, read_checkpoint, 0, 30, "last.pt")
    assert refused == len(list(fuzz.mutations(data, 0, 30)))


@pytest.mark.parametrize("kind", SPECIAL)
def test_a_checkpoint_that_is_not_a_regular_file(tmp_path, finished_run, kind):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / CHECKPOINT).unlink()
    _special(run_dir / CHECKPOINT, kind)
    record = (run_dir / "results.json").read_bytes()
    cfg = compose_cfg(*SMALL, "train.steps=8")
    fuzz.expect(in_child(lambda: run_config(cfg, run_dir)), (2,), kind)
    assert (run_dir / "results.json").read_bytes() == record


def test_a_damaged_dataset_leaves_the_finished_run_as_it_was(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data)
    args = (*SMALL, "dataset=cifar10", f"data_dir={data}", "model.hidden_size=8",
            "dataset.val_size=0")
    run_dir = tmp_path / "run"
    run_config(compose_cfg(*args, "train.steps=2"), run_dir)
    batch_file = data / "cifar-10-batches-py" / "data_batch_3"
    batch_file.write_bytes(batch_file.read_bytes()[:-50])
    before = files_under(run_dir)
    cfg = compose_cfg(*args, "train.steps=4")
    outcome = in_child(lambda: run_config(cfg, run_dir))
    fuzz.expect(outcome, (2,), "truncated batch")
    assert str(batch_file) in outcome.output
    assert files_under(run_dir) == before


# --- more of the same, for a longer run -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 4))
@pytest.mark.parametrize("fmt", ["batch", "idx", "results.json", "halving.json"])
def test_fuzz_more_seeds(tmp_path, finished_run, seed, fmt):
    data, read = {
        "batch": (pickle.dumps(_small_batch(), protocol=2), read_cifar_batch),
        "idx": (idx_bytes((3, 28, 28)), _read_images),
        "results.json": ((finished_run / "results.json").read_bytes(), _read_results),
        "halving.json": (json.dumps(_halving_record()).encode(),
                         lambda path: read_halving(path.parent)),
    }[fmt]
    fuzz.fuzz_file(tmp_path, data, read, seed, 100, fmt)


# --- settings beyond what the libraries accept, or the machine holds --------------------------

BAD_SETTINGS = ["dataset.val_seed=4294967296", "dataset=digits dataset.split_seed=-1",
                "dataset.test_fraction=0.0001", "dataset=noise_digits dataset.noise_seed="
                + str(2**64), "dataset=pmnist dataset.permutation_seed=" + str(2**64),
                "dataset=noise_digits dataset.seq_len=1000000000", "model.hidden_size=60000",
                "seed=" + "9" * 401, "train.steps=" + "9" * 401,
                # beyond a float32, which torch's optimizers compute in
                "optimizer.lr=1e300", "optimizer.weight_decay=1e300", "model.eps=1e39",
                "optimizer=adam optimizer.eps=1e300"]


@pytest.mark.parametrize("overrides", BAD_SETTINGS)
def test_a_setting_beyond_its_range_is_one_line_before_any_work(tmp_path, overrides):
    """Each refused in one line naming it, before a byte is allocated or written (within the
    fuzz suite's 500 MB and 5 CPU seconds)."""
    cfg = compose_cfg(*SMALL, *overrides.split())
    outcome = in_child(lambda: run_config(cfg, tmp_path / "run"))
    fuzz.expect(outcome, (2,), overrides)
    assert overrides.split()[-1].split("=")[0] in outcome.output
    assert not (tmp_path / "run" / "results.json").exists()
