"""The collector's tables: results.csv (one row per job; its columns derive from `RunResult`'s
fields and every registry's settings) and results.md (the paper's tables with our chosen
configuration beside the paper's number, the best configuration per task, halving rungs,
accuracy against T, and the jobs without a final result).

Every text that comes from a file (names, errors, settings) goes into a markdown cell escaped:
one line, no table separators, no HTML, no terminal escape sequences.
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

from arnn.errors import one_line
from arnn.halving_record import HalvingRecord
from arnn.points import Score
from arnn.registry import columns
from arnn.report.choose import Point, best_per_task
from arnn.report.jobs import Job
from arnn.report.paper import PAPER, PAPER_TABLES
from arnn.results import REPORTED, VALIDATION_METRICS, RunResult, Status

# How jobs are counted in the summary; requeued jobs (waiting for SLURM) count as running.
STATUS_ORDER = ("completed", "diverged", "pruned", "failed", "running", "interrupted",
                "missing")
COUNTED_AS = {Status.REQUEUED.value: "running"}
NOT_FINAL = ("failed", "running", "interrupted", "missing")


def cell(value: Any, limit: int = 200) -> str:
    """`value` as one markdown table cell, printable in a terminal."""
    text = one_line(Exception(str(value)))[:limit]
    return html.escape(text, quote=False).replace("|", "\\|")


def csv_columns() -> list[str]:
    """job, status, rung, every registry setting, then RunResult's other fields."""
    settings = list(columns())
    extra = [f.name for f in fields(RunResult)
             if f.name not in (*settings, "status", "config", "evaluations")]
    return ["job", "status", "rung", *settings, *extra]


def csv_row(job: Job) -> dict[str, Any]:
    r = job.result
    values = {f.name: getattr(r, f.name) if r else None for f in fields(RunResult)}
    return {**values, **job.settings, "job": str(job.path), "status": job.status,
            "rung": job.rung}


def csv_text(jobs: list[Job]) -> str:
    """results.csv: one row per job."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=csv_columns(), extrasaction="ignore")
    writer.writeheader()
    for job in jobs:
        writer.writerow(csv_row(job))
    return out.getvalue()


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def spread(s: Score) -> str:
    """mean ± std (n) in percent, with what the seeds left out; `-` for no score."""
    if s.mean is None:
        return "-"
    n = f"({s.counted}{s.note()})"
    if s.counted == 1:
        return f"{100 * s.mean:.1f}% {n}"
    return f"{100 * s.mean:.1f} ± {100 * s.std:.1f}% {n}"


def varying(jobs: list[Job]) -> set[str]:
    """The settings (columns) whose values differ between the jobs, the seed aside."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for key, value in job.settings.items():
            values.setdefault(key, set()).add(repr(value))
    return {key for key, seen in values.items() if len(seen) > 1 and key != "seed"}


def settings_text(point: Point, shown: set[str]) -> str:
    """The point's model and optimizer settings, and every other setting in `shown`."""
    paths = columns()
    order = ("optimizer.", "model.")  # the optimizer and its lr first, then the model's
    keys = sorted((k for k, v in point.settings.items() if v is not None and k != "model"
                   and (paths[k].startswith(order) or k in shown)),
                  key=lambda k: next((i for i, g in enumerate(order)
                                      if paths[k].startswith(g)), len(order)))
    return ", ".join(f"{k}={point.settings[k]}" for k in keys)


def halving_markdown(sweep_dir: Path, record: HalvingRecord) -> list[str]:
    """The rungs of a halving sweep, numbered from 1 as the sweeper's log numbers them."""
    trained, full = record.steps_trained(), len(record.configs) * record.budgets[-1]
    points = len({tuple(o for o in c if not o.startswith("seed=")) for c in record.configs})
    lines = [f"## Successive halving: {cell(sweep_dir)}", "",
             f"{len(record.configs)} jobs ({points} grid points), eta {record.eta}, ranked by "
             f"{cell(record.metric)}; {trained} steps trained against {full} for the full "
             f"grid ({trained / full:.1%}).", "",
             "| rung | budget (steps) | jobs | completed | promoted |", "|---|---|---|---|---|"]
    for r, rung in enumerate(record.rungs, start=1):
        done = sum(o.completed for o in rung.outcomes.values())
        promoted = rung.promoted if rung.done else "(running)"
        lines.append(f"| {r} | {rung.budget} | {len(rung.jobs)} | {done} | {promoted} |")
    return lines + [""]


def paper_tables(best: dict[tuple[str, str], Point], report: str) -> list[str]:
    lines: list[str] = []
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
                cells += [spread(point.score(report)) if point else "-",
                          pct(PAPER.get((d, model)))]
                if point is not None:
                    units = str(point.settings.get("hidden_size"))
                    counts = [j.result.params for j in point.jobs if j.result and j.result.params]
                    params = f"{counts[0] / 1e3:.0f}k" if counts else "-"
            lines.append("| " + " | ".join(cells + [units, params]) + " |")
        lines.append("")
    return lines


def _detail(result: RunResult | None) -> str:
    if result is None:
        return ""
    if result.error or result.divergence:
        return f" ({cell(result.error or result.divergence, 1000)})"
    saved = f"step {result.steps} saved"
    if result.status == "requeued":
        return f" (requeued by SLURM, {result.requeues} time(s); {saved})"
    return f" ({saved}" + (f"; requeued {result.requeues} time(s))" if result.requeues else ")")


def jobs_summary(jobs: list[Job], missing: int) -> list[str]:
    counts = Counter(COUNTED_AS.get(job.status, job.status) for job in jobs)
    counts["missing"] += missing
    lines = ["## Jobs", "", "| " + " | ".join(STATUS_ORDER) + " | total |",
             "|" + "---|" * (len(STATUS_ORDER) + 1),
             "| " + " | ".join(str(counts[s]) for s in STATUS_ORDER)
             + f" | {sum(counts.values())} |", ""]
    problems = [j for j in jobs if COUNTED_AS.get(j.status, j.status) in NOT_FINAL]
    if problems:
        lines += ["Jobs without a final result:", ""]
        lines += [f"- {cell(j.path, 1000)}: {cell(j.status)}{_detail(j.result)}"
                  for j in problems]
        lines.append("")
    if missing:
        lines.append(f"{missing} launched job(s) have no directory yet.")
    return lines


def tie_note(point: Point) -> str:
    return f" (tied with {point.tied} other configuration(s): the first in job order)" \
        if point.tied else ""


def markdown(jobs: list[Job], missing: int, select: str,
             halving: dict[Path, HalvingRecord] | None = None,
             notes: list[str] | None = None) -> str:
    best, report = best_per_task(jobs, select), REPORTED[select]
    lines = [f"# Sweep results: each task's configuration chosen by {select} (mean over "
             f"seeds), reported by {report}", "",
             "Cells: mean ± standard deviation over seeds (number of seeds); a seed that did "
             "not complete counts 0 and is named beside the count (docs/presets.md, \"Seeds and "
             "spread\").", ""]
    if select not in VALIDATION_METRICS:
        lines += [f"**Chosen on the test split ({select}): the numbers below are not test "
                  "results.**", ""]
    for sweep_dir, record in (halving or {}).items():
        lines += halving_markdown(sweep_dir, record)
    lines += paper_tables(best, report)
    lines += ["## Best configuration per task", "",
              f"| dataset | model | {select} (chose) | {report} (reports) | test accuracy "
              "(final) | paper | steps | hyperparameters | jobs |",
              "|---|---|---|---|---|---|---|---|---|"]
    shown = varying(jobs)
    for (dataset, model), point in sorted(best.items()):
        steps = sorted({j.result.steps for j in point.jobs if j.result})
        lines.append(
            f"| {cell(dataset)} | {cell(model)} | {spread(point.score(select))} | "
            f"{spread(point.score(report))} | {spread(point.score('test_accuracy'))} | "
            f"{pct(PAPER.get((dataset, model)))} | {'/'.join(map(str, steps))} | "
            f"{cell(settings_text(point, shown), 400)}{tie_note(point)} | "
            f"{cell(', '.join(str(j.path) for j in point.jobs), 2000)} |"
        )
    lines += ["", *jobs_summary(jobs, missing)]
    if notes:
        lines += ["", "Sweep files not used (the jobs above are reported without them):", ""]
        lines += [f"- {cell(note, 1000)}" for note in notes]
    return "\n".join(lines)


def length_markdown(groups: dict[tuple[str, str], dict[int, list[Job]]], metric: str
                    ) -> list[str]:
    from arnn.points import score

    lengths = sorted({t for g in groups.values() for t in g})
    lines = [f"## {metric.replace('_', ' ')} against the sequence length T", "",
             "mean ± standard deviation over seeds (number of seeds)", "",
             "| dataset | model | " + " | ".join(f"T={t}" for t in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for (dataset, model), by_length in sorted(groups.items()):
        cells = [spread(score((j.status, j.metric(metric)) for j in by_length[t]))
                 if t in by_length else "-" for t in lengths]
        lines.append(f"| {cell(dataset)} | {cell(model, 400)} | " + " | ".join(cells) + " |")
    return lines + [""]
