"""Reading sweep directories: each job's record and settings, how many jobs the sweep launched
(Hydra's multirun.yaml), and a halving sweep's rungs.

A job is any directory holding Hydra's .hydra/config.yaml; its numbers and its resolved settings
come from results.json (read through `RunResult`, the schema the runner writes; a job that has
none yet is described by the names in .hydra/config.yaml). A job whose files are damaged is
listed as failed with the reason; a damaged sweep file becomes a note. Nothing is dropped.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arnn.bounded import load_yaml
from arnn.errors import one_line
from arnn.grid import register_resolver
from arnn.halving_record import HalvingRecord, read_halving
from arnn.registry import columns
from arnn.results import ResultsError, RunResult, Status

MAX_CONFIG_BYTES = 1 << 20  # .hydra/config.yaml and multirun.yaml are a few kB
MAX_JOBS = 1_000_000  # jobs one sweep directory may announce
MAX_EXPANSION = 1000  # values one sweep value may read through interpolations (ours: 2)
MAX_INTERPOLATION_DEPTH = 16
_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")  # ${a.b}: a plain reference to a value


@dataclass
class Job:
    path: Path
    status: str  # a Status value, or `missing` (no record yet)
    dataset: str
    model: str
    settings: dict[str, Any]  # column -> value (arnn.registry.columns), the seed included
    result: RunResult | None
    rung: int | None = None  # in a halving sweep: the deepest rung the job reached (from 1)

    def metric(self, name: str) -> float | None:
        return getattr(self.result, name) if self.result is not None else None


def _select(cfg: Any, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _scalar(value: Any) -> Any:
    """A setting as a table shows it: numbers, names and flags as they are, anything else (a
    damaged record's lists or dicts) as short text."""
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(value)[:40]


def _read_config(job_dir: Path) -> dict[str, Any]:
    path = job_dir / ".hydra" / "config.yaml"
    cfg = load_yaml(path, MAX_CONFIG_BYTES, ResultsError)
    if not isinstance(cfg, dict | type(None)):
        raise ResultsError(f"{path}: not a mapping of settings")
    return cfg or {}


def read_job(job_dir: Path) -> Job:
    """One job; a job whose files are damaged is listed as failed, with the reason."""
    problems: list[ResultsError] = []
    result: RunResult | None = None
    hydra_cfg: dict[str, Any] = {}
    for read in (_read_config, RunResult.read):
        try:
            value = read(job_dir)
        except ResultsError as e:
            problems.append(e)
            continue
        hydra_cfg, result = (value, result) if isinstance(value, dict) else (hydra_cfg, value)
    if problems:
        names = {g: {"name": str(_select(hydra_cfg, f"{g}.name"))}
                 for g in ("model", "dataset", "optimizer")}
        result = RunResult.failed(names, problems[0])

    def setting(path: str) -> Any:
        """From the run's resolved identity in results.json (exactly the settings it has);
        what it lacks (a job refused before it had one), a literal of .hydra/config.yaml."""
        value = _select(result.config, path) if result is not None else None
        if value is None:
            value = _select(hydra_cfg, path)
        return None if isinstance(value, str) and "${" in value else _scalar(value)

    settings = {column: setting(path) for column, path in columns().items()}
    if result is None:
        dataset, model = _select(hydra_cfg, "dataset.name"), _select(hydra_cfg, "model.name")
        status = "missing"
    else:
        dataset, model, status = result.dataset, result.model, str(result.status)
    return Job(job_dir, status, str(dataset), str(model), settings, result)


def _count(override: Any) -> int:
    """How many values a sweep override has, without listing them (a range of 10^12 values
    is one line of multirun.yaml)."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    if not override.is_sweep_override():
        return 1
    sweep = override.value()
    if isinstance(sweep, RangeSweep):
        return max(0, math.ceil((sweep.stop - sweep.start) / sweep.step))
    if isinstance(sweep, ChoiceSweep):
        return len(sweep.list)
    return sum(1 for _ in itertools.islice(override.sweep_string_iterator(), MAX_JOBS + 1))


def _expansion(cfg: Any, text: str, depth: int = 0) -> int:
    """How many values resolving `text` reads from `cfg`, each reference counted every time it
    is read (a chain of values that each name the previous one twice doubles per link):
    resolved only when small, since OmegaConf would take as long as this number."""
    total = 1
    for ref in _REFERENCE.findall(text):
        target = _select(cfg, ref)
        total += _expansion(cfg, target, depth + 1) if isinstance(target, str) else 1
        if total > MAX_EXPANSION or depth > MAX_INTERPOLATION_DEPTH:
            return MAX_EXPANSION + 1
    return total


def expected_jobs(sweep_dir: Path) -> int | None:
    """How many jobs the sweep launched, from Hydra's multirun.yaml (None if unknown);
    ResultsError for a multirun.yaml that is damaged or announces more than MAX_JOBS."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    register_resolver()  # the sweep configs' resolver
    raw = load_yaml(path, MAX_CONFIG_BYTES, ResultsError)
    try:
        cfg = OmegaConf.create(raw)
        if "optuna" in str(cfg.hydra.sweeper.get("_target_", "")):
            return None  # its trials are as many as were asked, over every run of the study
        node = cfg.hydra.sweeper.params
        for value in (_select(raw, "hydra.sweeper.params") or {}).values():
            if _expansion(raw, str(value)) > MAX_EXPANSION:
                raise ResultsError(f"{path}: its sweep's values interpolate more than "
                                   f"{MAX_EXPANSION} values (a chain of interpolations?)")
        params = OmegaConf.to_container(node, resolve=True) if node else {}
        args = [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task or [])
        grid = {o.key_or_group: _count(o)  # a command-line value beats the sweep's
                for o in OverridesParser.create().parse_overrides(args)}
    except ResultsError:
        raise
    except Exception as e:  # noqa: BLE001 - OmegaConf and Hydra's parser raise many kinds
        raise ResultsError(f"{path}: not a sweep Hydra wrote ({type(e).__name__}: {e})") from None
    total = math.prod(grid.values())
    if total > MAX_JOBS:
        raise ResultsError(f"{path}: announces {total} jobs, more than the {MAX_JOBS} a sweep "
                           "here can have")
    return total


@dataclass
class Collection:
    jobs: list[Job]
    missing: int  # launched jobs without a directory yet
    halving: dict[Path, HalvingRecord]  # the halving sweeps' records
    notes: list[str]  # sweep files that could not be used, why


def collect(sweep_dirs: list[Path]) -> Collection:
    """All jobs under the sweep dirs. A damaged job is listed as failed; a damaged sweep file
    (multirun.yaml, halving.json) becomes a note, and the jobs are reported without it."""
    found = Collection([], 0, {}, [])
    for sweep_dir in map(Path, sweep_dirs):
        dirs = sorted(
            (p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")),
            key=lambda p: (len(p.parts), p.name.zfill(8), str(p)),
        )
        jobs = [read_job(d) for d in dirs]
        try:
            record, expected = read_halving(sweep_dir), expected_jobs(sweep_dir)
        except ResultsError as e:
            found.notes.append(one_line(e))
            record, expected = None, None
        if record is not None:
            found.halving[sweep_dir] = record
            rungs = {str(j): r for r, rung in enumerate(record.rungs, start=1)
                     for j in rung.jobs}
            for job in jobs:
                job.rung = rungs.get(job.path.name)
        found.jobs += jobs
        if expected is not None:
            found.missing += max(0, expected - len(dirs))
    return found


def finished(jobs: list[Job]) -> list[Job]:
    """The jobs that ran to an end (completed, diverged or pruned), not failed or pending."""
    return [j for j in jobs if Status.ended(j.status)]
