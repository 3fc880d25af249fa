"""Draw the paper's Figure 1 (2-D vanilla and residual systems) as PNG and PDF.

    python scripts/plot_dynamics.py [--out docs/figure1.png]
"""

from pathlib import Path

from arnn.dynamics import plot_figure1
from arnn.errors import OneLineParser

if __name__ == "__main__":
    parser = OneLineParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/figure1.png"))
    args = parser.parse_args()
    for path in plot_figure1(args.out):
        print(f"wrote {path}")
