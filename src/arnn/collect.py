"""Collect sweep directories into results.csv, results.md (the paper's tables) and figures.

    python scripts/collect_results.py <sweep dir> [<sweep dir> ...] [--out DIR]
    arnn-collect <sweep dir> ...

The rooms are in `arnn.report`: reading jobs, choosing (one rule of a grid point's score,
`arnn.points`), tables, figures and the paper's numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arnn.errors import UserError, exit_with
from arnn.report.choose import check_selectable
from arnn.report.figures import length_figure, length_groups, sensitivity_figure
from arnn.report.jobs import collect
from arnn.report.tables import length_markdown, markdown, write_csv
from arnn.results import REPORTED


def _arguments(argv: list[str] | None) -> argparse.Namespace:
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
    return args


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    try:
        found = collect(args.sweep_dirs)
        check_selectable(found.jobs, args.select)
        if not found.jobs and not found.missing:
            raise UserError("no jobs found (no .hydra/config.yaml under "
                            + ", ".join(map(str, args.sweep_dirs)) + ")")
    except UserError as e:
        exit_with(e)
    out = args.out or args.sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(found.jobs, out / "results.csv")
    table = markdown(found.jobs, found.missing, args.select, found.halving, found.notes)
    written = [out / "results.csv", out / "results.md", out / "results.png"]
    report = REPORTED[args.select]
    groups = length_groups(found.jobs)
    if groups:  # jobs that differ in T: accuracy against the sequence length
        table += "\n" + "\n".join(length_markdown(groups, report))
        length_figure(groups, out / "results_length.png", report)
        written.append(out / "results_length.png")
    (out / "results.md").write_text(table + "\n")
    sensitivity_figure(found.jobs, out / "results.png", args.select)
    print(table)
    print("\nwrote " + ", ".join(map(str, written)))
