"""Collect sweep directories into results.csv, results.md and results.png.

    python scripts/collect_results.py <sweep dir> [<sweep dir> ...] [--out DIR]
"""

from arnn.collect import main

if __name__ == "__main__":
    main()
