"""Collect sweep directories into results.csv, results.md (the paper's tables) and figures.

    python scripts/collect_results.py <sweep dir> [<sweep dir> ...] [--out DIR]
    arnn-collect <sweep dir> ...

The rooms are in `arnn.report`: reading jobs, choosing (one rule of a grid point's score,
`arnn.points`), tables, figures and the paper's numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arnn.errors import OneLineParser, UserError, exit_with
from arnn.report.choose import check_selectable
from arnn.report.figures import length_figure, length_groups, sensitivity_figure
from arnn.report.jobs import Collection, collect
from arnn.report.tables import csv_text, length_markdown, markdown
from arnn.results import REPORTED
from arnn.storage import Folder


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__,
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
        table, written = _write(found, args.out or args.sweep_dirs[0], args.select)
    except UserError as e:
        exit_with(e)
    print(table)
    print("\nwrote " + ", ".join(map(str, written)))


def _write(found: Collection, out: Path, select: str) -> tuple[str, list[Path]]:
    """results.csv, .md and .png (and results_length.png for jobs that differ in T) in `out`,
    each written atomically through the folder held (never through a link)."""
    report = REPORTED[select]
    table = markdown(found.jobs, found.missing, select, found.halving, found.notes)
    files = {"results.csv": csv_text(found.jobs).encode()}
    groups = length_groups(found.jobs)
    if groups:  # jobs that differ in T: accuracy against the sequence length
        table += "\n" + "\n".join(length_markdown(groups, report))
        files["results_length.png"] = length_figure(groups, report)
    files["results.md"] = (table + "\n").encode()
    files["results.png"] = sensitivity_figure(found.jobs, select)
    with Folder(out) as folder:
        return table, [folder.write_atomic(name, data) for name, data in files.items()]
