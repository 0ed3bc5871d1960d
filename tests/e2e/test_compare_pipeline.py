"""vpr.compare where there is nothing to compare. (The compare of a stored seed grid runs on the suites' runs:
tests/suites/test_suites.py, which shares their miniature repository.)"""

import subprocess
import sys


def test_compare_without_experiments_says_what_to_run(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, capture_output=True
    )
    assert proc.returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "vpr.compare"], cwd=tmp_path, capture_output=True, text=True
    )
    assert (
        proc.returncode == 2
        and proc.stderr.startswith("error: ")
        and "dvc queue start" in proc.stderr
    )
