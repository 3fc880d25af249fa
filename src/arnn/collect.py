"""Collect sweep directories into results.csv, results.md (the paper's tables) and a figure.

    python scripts/collect_results.py <sweep dir> [<sweep dir> ...] [--out DIR]

A job is any directory holding Hydra's .hydra/config.yaml; its numbers and its resolved settings
come from results.json (read through `RunResult`, the schema the runner writes; a job that has
none yet is described by the names in .hydra/config.yaml). Jobs that failed, diverged, are still
running or never started are counted and listed, never dropped.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arnn.bounded import load_yaml
from arnn.errors import ConfigError, UserError, exit_with, one_line
from arnn.grid import register_resolver
from arnn.results import ResultsError, RunResult, Status, read_halving, steps_trained

# Test accuracy reported in the paper (Tables 1 and 2), with units and parameter counts.
PAPER = {
    ("mnist", "lstm"): 0.973, ("pmnist", "lstm"): 0.926,
    ("mnist", "arnn"): 0.980, ("pmnist", "arnn"): 0.958,
    ("mnist", "gated_arnn"): 0.988, ("pmnist", "gated_arnn"): 0.931,
    ("cifar10", "lstm"): 0.597, ("noise_cifar10", "lstm"): 0.116,
    ("cifar10", "ablation"): 0.546, ("noise_cifar10", "ablation"): 0.462,
    ("cifar10", "arnn"): 0.587, ("noise_cifar10", "arnn"): 0.483,
    ("cifar10", "gated_arnn"): 0.622, ("noise_cifar10", "gated_arnn"): 0.547,
}
PAPER_TABLES = [
    ("Table 1", ("mnist", "pmnist"), ("lstm", "arnn", "gated_arnn")),
    ("Table 2", ("cifar10", "noise_cifar10"), ("lstm", "ablation", "arnn", "gated_arnn")),
]
# Hyperparameters a job is described by (config paths), in table order.
HYPERPARAMETERS = {
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "eps": "model.eps",
    "gamma": "model.gamma",
    "sigma_w": "model.sigma_w",
    "hidden_size": "model.hidden_size",
    "seq_len": "dataset.seq_len",
    "seed": "seed",
}
MAX_CONFIG_BYTES = 1 << 20  # .hydra/config.yaml and multirun.yaml are a few kB
MAX_JOBS = 1_000_000  # jobs one sweep directory may announce
# A requeued job (stopped by SLURM's signal, waiting to resume) is counted as running.
STATUS_ORDER = ("completed", "diverged", "failed", "running", "interrupted", "missing")
CSV_COLUMNS = ["job", "status", "dataset", "model", *HYPERPARAMETERS, "rung", "steps",
               "val_accuracy", "best_val_accuracy", "best_val_step", "test_accuracy_at_best_val",
               "test_accuracy", "best_test_accuracy", "params", "wall_time_s", "log10_growth",
               "diverged_step", "divergence", "requeues", "error"]


@dataclass
class Job:
    path: Path
    status: str
    dataset: str
    model: str
    hyper: dict[str, Any]
    result: RunResult | None
    rung: int | None = None  # in a halving sweep: the deepest rung the job reached (0-based)

    def metric(self, name: str) -> float | None:
        return getattr(self.result, name) if self.result is not None else None

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "job": str(self.path), "status": self.status, "dataset": self.dataset,
            "model": self.model, **self.hyper, "rung": self.rung,
            "steps": r.steps if r else None,
            **{name: getattr(r, name) if r else None for name in (
                "val_accuracy", "best_val_accuracy", "best_val_step", "test_accuracy_at_best_val",
                "test_accuracy", "best_test_accuracy", "params")},
            "wall_time_s": r.wall_time_s if r else None,
            "log10_growth": r.log10_growth if r else None,
            "diverged_step": r.diverged_step if r else None,
            "divergence": r.divergence if r else None,
            "requeues": r.requeues if r else None,
            "error": r.error if r else None,
        }


def _select(cfg: dict[str, Any], dotted: str) -> Any:
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

    hyper = {key: setting(path) for key, path in HYPERPARAMETERS.items()}
    model_settings = result.config.get("model") if result is not None else None
    if isinstance(model_settings, dict):  # a model's own settings beyond the usual ones
        hyper.update({k: _scalar(v) for k, v in model_settings.items()
                      if k != "name" and k not in hyper})
    if result is None:
        dataset, model = _select(hydra_cfg, "dataset.name"), _select(hydra_cfg, "model.name")
        status = "missing"
    else:
        dataset, model, status = result.dataset, result.model, str(result.status)
    status = "running" if status == Status.REQUEUED else status
    return Job(job_dir, status, str(dataset), str(model), hyper, result)


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


def expected_jobs(sweep_dir: Path) -> int | None:
    """How many jobs the sweep launched, from Hydra's multirun.yaml (None if unknown);
    ResultsError for a multirun.yaml that is damaged or announces more than MAX_JOBS."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    register_resolver()  # the sweep configs' resolver
    try:
        cfg = OmegaConf.create(load_yaml(path, MAX_CONFIG_BYTES, ResultsError))
        if "optuna" in str(cfg.hydra.sweeper.get("_target_", "")):
            return None  # its trials are as many as were asked, over every run of the study
        node = cfg.hydra.sweeper.params
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
    halving: dict[Path, dict[str, Any]]  # the halving sweeps' records
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
            rungs = {str(j): r for r, rung in enumerate(record["rungs"]) for j in rung["jobs"]}
            for job in jobs:
                job.rung = rungs.get(job.path.name)
        found.jobs += jobs
        if expected is not None:
            found.missing += max(0, expected - len(dirs))
    return found


# What reports a configuration chosen by each metric: the test accuracy at the same point.
REPORTED = {"val_accuracy": "test_accuracy", "best_val_accuracy": "test_accuracy_at_best_val",
            "test_accuracy": "test_accuracy", "best_test_accuracy": "best_test_accuracy"}
VALIDATION = ("val_accuracy", "best_val_accuracy")


@dataclass
class Point:
    """A configuration of a task and the jobs that ran it, one per seed."""

    dataset: str
    model: str
    hyper: dict[str, Any]  # the settings but the seed
    rung: int  # in a halving sweep: the deepest rung its jobs reached (0-based)
    jobs: list[Job]

    def values(self, metric: str) -> list[float]:
        return [v for j in self.jobs if j.status in ("completed", "diverged")
                and (v := j.metric(metric)) is not None]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return sum(values) / len(values) if values else None


def grid_points(jobs: list[Job]) -> list[Point]:
    """Jobs grouped by task and settings but the seed (and by halving rung)."""
    points: dict[tuple, Point] = {}
    for job in jobs:
        hyper = {k: v for k, v in job.hyper.items() if k != "seed"}
        key = (job.dataset, job.model, tuple(sorted(hyper.items(), key=str)), job.rung or 0)
        point = points.setdefault(key, Point(job.dataset, job.model, hyper, job.rung or 0, []))
        point.jobs.append(job)
    return list(points.values())


def best_per_task(jobs: list[Job], select: str) -> dict[tuple[str, str], Point]:
    """The best configuration per (dataset, model): in a halving sweep the deepest rung first
    (a configuration stopped early is not compared with one trained to the end), then the mean
    of `select` over its seeds."""
    best: dict[tuple[str, str], Point] = {}
    for point in grid_points(jobs):
        mean = point.mean(select)
        if mean is None:
            continue
        key, rank = (point.dataset, point.model), (point.rung, mean)
        if key not in best or rank > (best[key].rung, best[key].mean(select)):
            best[key] = point
    return best


def check_selectable(jobs: list[Job], select: str) -> None:
    """Choosing by validation needs jobs that have a validation split."""
    finished = [j for j in jobs if j.status in ("completed", "diverged")]
    if select in VALIDATION and finished and all(j.metric(select) is None for j in finished):
        raise ConfigError(f"--select={select} is invalid: no job has a validation split "
                          "(dataset.val_size=0); choose by a test metric knowingly "
                          "(--select test_accuracy: then its number is no test result)")


def halving_markdown(sweep_dir: Path, record: dict[str, Any]) -> list[str]:
    budgets, configs = record["budgets"], record["configs"]
    trained, full = steps_trained(record), len(configs) * budgets[-1]
    points = len({tuple(o for o in c if not o.startswith("seed=")) for c in configs})
    lines = [f"## Successive halving: {sweep_dir}", "",
             f"{len(configs)} jobs ({points} grid points), eta {record.get('eta')}, ranked by "
             f"{record.get('metric')}; {trained} steps trained against {full} for the full "
             f"grid ({trained / full:.1%}).", "",
             "| rung | budget (steps) | jobs | completed | promoted |", "|---|---|---|---|---|"]
    for r, rung in enumerate(record["rungs"]):
        outcomes = rung.get("outcomes", {})
        done = sum(o["status"] == "completed" for o in outcomes.values())
        promoted = rung.get("promoted", []) if rung.get("done") else "(running)"
        lines.append(f"| {r} | {rung['budget']} | {len(rung['jobs'])} | {done} | {promoted} |")
    return lines + [""]


def _detail(result: RunResult | None) -> str:
    if result is None:
        return ""
    if result.error or result.divergence:
        return f" ({one_line(Exception(result.error or result.divergence))})"
    saved = f"step {result.steps} saved"
    if result.status == "requeued":
        return f" (requeued by SLURM, {result.requeues} time(s); {saved})"
    return f" ({saved}" + (f"; requeued {result.requeues} time(s))" if result.requeues else ")")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _hyper_text(point: Point) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.hyper.items() if v is not None)


def _spread(values: list[float]) -> str:
    """mean ± std (n) in percent; `-` for none."""
    if not values:
        return "-"
    mean, n = 100 * sum(values) / len(values), len(values)
    return f"{mean:.1f}% (1)" if n == 1 else f"{mean:.1f} ± {100 * _std(values):.1f}% ({n})"


def markdown(jobs: list[Job], missing: int, select: str,
             halving: dict[Path, dict[str, Any]] | None = None,
             notes: list[str] | None = None) -> str:
    best, report = best_per_task(jobs, select), REPORTED[select]
    lines = [f"# Sweep results: each task's configuration chosen by {select} (mean over "
             f"seeds), reported by {report}", "",
             "Cells: mean ± standard deviation over seeds (number of seeds).", ""]
    if select not in VALIDATION:
        lines += [f"**Chosen on the test split ({select}): the numbers below are not test "
                  "results.**", ""]
    for sweep_dir, record in (halving or {}).items():
        lines += halving_markdown(sweep_dir, record)
    for title, datasets, models in PAPER_TABLES:
        if not any(d == ds for ds in datasets for d, _ in best):
            continue
        head = ["model"] + [f"{d} {w}" for d in datasets for w in ("ours", "paper")]
        lines += [f"## {title} ({report})", "",
                  "| " + " | ".join(head + ["units", "params"]) + " |",
                  "|" + "---|" * (len(head) + 2)]
        for model in models:
            cells, units, params = [model], "-", "-"
            for d in datasets:
                point = best.get((d, model))
                cells += [_spread(point.values(report)) if point else "-",
                          _pct(PAPER.get((d, model)))]
                if point is not None:
                    job = point.jobs[0]
                    units, params = str(job.hyper["hidden_size"]), f"{job.result.params / 1e3:.0f}k"
            lines.append("| " + " | ".join(cells + [units, params]) + " |")
        lines.append("")
    lines += ["## Best configuration per task", "",
              f"| dataset | model | {select} (chose) | {report} (reports) | test accuracy "
              "(final) | paper | steps | hyperparameters | jobs |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model), point in sorted(best.items()):
        steps = sorted({j.result.steps for j in point.jobs})
        lines.append(
            f"| {dataset} | {model} | {_spread(point.values(select))} | "
            f"{_spread(point.values(report))} | {_spread(point.values('test_accuracy'))} | "
            f"{_pct(PAPER.get((dataset, model)))} | {'/'.join(map(str, steps))} | "
            f"{_hyper_text(point)} | {', '.join(str(j.path) for j in point.jobs)} |"
        )
    counts = Counter(job.status for job in jobs)
    counts["missing"] += missing
    lines += ["", "## Jobs", "", "| " + " | ".join(STATUS_ORDER) + " | total |",
              "|" + "---|" * (len(STATUS_ORDER) + 1),
              "| " + " | ".join(str(counts[s]) for s in STATUS_ORDER)
              + f" | {sum(counts.values())} |", ""]
    problems = [j for j in jobs if j.status in ("failed", "running", "interrupted", "missing")]
    if problems:
        lines += ["Jobs without a final result:", ""]
        lines += [f"- {j.path}: {j.status}{_detail(j.result)}" for j in problems]
        lines.append("")
    if missing:
        lines.append(f"{missing} launched job(s) have no directory yet.")
    if notes:
        lines += ["", "Sweep files not used (the jobs above are reported without them):", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def write_csv(jobs: list[Job], path: Path) -> None:
    with open(path, "w", newline="") as f:
        extra = list(dict.fromkeys(k for job in jobs for k in job.hyper
                                   if k not in HYPERPARAMETERS))
        at = CSV_COLUMNS.index("rung")
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS[:at] + extra + CSV_COLUMNS[at:])
        writer.writeheader()
        for job in jobs:
            writer.writerow(job.row())


def sensitivity_figure(jobs: list[Job], path: Path, metric: str) -> list[str]:
    """Test accuracy against each hyperparameter that varies, one panel each; every job is a
    dot, the line joins the best job per value. Returns the swept hyperparameters drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [j for j in jobs if j.status in ("completed", "diverged")]
    keys = dict.fromkeys(k for j in done for k in j.hyper)
    swept = [k for k in keys
             if len({j.hyper.get(k) for j in done if j.hyper.get(k) is not None}) > 1]
    panels = swept or ["lr"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    tasks = sorted({(j.dataset, j.model) for j in done})
    for ax, key in zip(axes[0], panels, strict=True):
        categorical = any(isinstance(j.hyper.get(key), str) for j in done)
        for i, task in enumerate(tasks):
            pts = [(j.hyper.get(key), j.metric(metric) or 0.0) for j in done
                   if (j.dataset, j.model) == task and j.hyper.get(key) is not None]
            if not pts:
                continue
            values = sorted({p[0] for p in pts}, key=str if categorical else float)
            pos = {v: k for k, v in enumerate(values)} if categorical else None
            xs = [pos[p[0]] if categorical else p[0] for p in pts]
            ax.scatter(xs, [p[1] for p in pts], s=12, alpha=0.5, color=f"C{i}")
            top = [max(a for v, a in pts if v == value) for value in values]
            ax.plot([pos[v] for v in values] if categorical else values, top, color=f"C{i}",
                    label="/".join(task))
            if categorical:
                ax.set_xticks(range(len(values)), [str(v) for v in values])
        if not categorical and key in ("eps", "gamma", "lr") and all(
            (j.hyper.get(key) or 0) > 0 for j in done
        ):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return swept


def length_groups(jobs: list[Job], metric: str
                  ) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(dataset, model and settings) -> {T: [metric of each seed]}, for jobs that differ in
    dataset.seq_len; every other setting but the seed (the model's, lr) tells lines apart."""
    done = [j for j in jobs if j.status in ("completed", "diverged")
            and j.metric(metric) is not None and j.hyper.get("seq_len") is not None]
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    for job in done:
        others = ", ".join(f"{k}={v}" for k, v in job.hyper.items()
                           if k not in ("seq_len", "seed") and v is not None)
        key = (job.dataset, f"{job.model} ({others})")
        groups.setdefault(key, {}).setdefault(job.hyper["seq_len"], []).append(
            job.metric(metric))
    return groups if len({t for g in groups.values() for t in g}) > 1 else {}


def length_markdown(groups: dict[tuple[str, str], dict[int, list[float]]], metric: str
                    ) -> list[str]:
    lengths = sorted({t for g in groups.values() for t in g})
    lines = [f"## {metric.replace('_', ' ')} against the sequence length T", "",
             "mean ± standard deviation over seeds (number of seeds)", "",
             "| dataset | model | " + " | ".join(f"T={t}" for t in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for (dataset, model), by_length in sorted(groups.items()):
        cells = [_spread(by_length[t]) if t in by_length else "-" for t in lengths]
        lines.append(f"| {dataset} | {model} | " + " | ".join(cells) + " |")
    return lines + [""]


def length_figure(groups: dict[tuple[str, str], dict[int, list[float]]], path: Path,
                  metric: str, chance: float = 0.1) -> None:
    """Accuracy against T, one line per model with its spread over seeds, chance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = [model.split(" (")[0] for _, model in groups]
    short = len(set(names)) == len(names)  # one line per model: its name says enough
    for i, ((dataset, model), by_length) in enumerate(sorted(groups.items())):
        lengths = sorted(by_length)
        values = [by_length[t] for t in lengths]
        means = [sum(v) / len(v) for v in values]
        for t, v in zip(lengths, values, strict=True):
            ax.scatter([t] * len(v), v, s=10, alpha=0.4, color=f"C{i}")
        ax.errorbar(lengths, means, yerr=[_std(v) for v in values], color=f"C{i}", capsize=3,
                    marker="o", label=model.split(" (")[0] if short else f"{dataset} {model}")
    ax.axhline(chance, color="gray", linestyle="--", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("sequence length T (steps)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write results.csv/.md/.png (default: the first sweep dir)")
    parser.add_argument("--select", default="best_val_accuracy", choices=list(REPORTED),
                        help="choose each task's configuration by this metric, averaged over "
                             "seeds: best_val_accuracy (default; reports the test accuracy at "
                             "that step, early stopping's report) or val_accuracy (reports the "
                             "final test accuracy); a test metric chooses on the test split, "
                             "and results.md says its numbers are then no test results")
    args = parser.parse_args(argv)
    for d in args.sweep_dirs:
        if not d.is_dir():
            parser.error(f"sweep dir {str(d)!r} does not exist")
    try:
        found = collect(args.sweep_dirs)
        check_selectable(found.jobs, args.select)
    except UserError as e:
        exit_with(e)
    jobs, missing = found.jobs, found.missing
    if not jobs and not missing:
        parser.error("no jobs found (no .hydra/config.yaml under " +
                     ", ".join(map(str, args.sweep_dirs)) + ")")
    out = args.out or args.sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(jobs, out / "results.csv")
    table = markdown(jobs, missing, args.select, found.halving, found.notes)
    report = REPORTED[args.select]
    written = [out / "results.csv", out / "results.md", out / "results.png"]
    groups = length_groups(jobs, report)
    if groups:  # jobs that differ in T: accuracy against the sequence length
        table += "\n" + "\n".join(length_markdown(groups, report))
        length_figure(groups, out / "results_length.png", report)
        written.append(out / "results_length.png")
    (out / "results.md").write_text(table + "\n")
    sensitivity_figure(jobs, out / "results.png", args.select)
    print(table)
    print("\nwrote " + ", ".join(map(str, written)))
