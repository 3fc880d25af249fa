"""The code base stays ruff clean (the linter is part of the test extra)."""

import subprocess
import sys

from tests.fixtures import ROOT


def test_ruff_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
