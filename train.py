"""Train and evaluate one configuration (or a sweep with --multirun). See README.md."""

from pathlib import Path

from arnn.cli import main

if __name__ == "__main__":
    main(Path(__file__).resolve().parent / "conf")
