"""End to end: a queued 2 seeds x 2 losses grid on the miniature city, compared from the DVC experiment store."""

import subprocess
import sys
import time

import pytest

from tests.helpers import dvc, run_checked

pytestmark = pytest.mark.slow


def _wait_for_queue(dest, timeout_s=1200):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = dvc("queue", "status", cwd=dest)
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(5)
    raise AssertionError(f"the queue did not finish in {timeout_s} s:\n{status}")


def test_compare_groups_a_queued_seed_grid_and_gives_intervals_and_verdicts(repo):
    dest, _ = repo
    dvc("exp", "run", "--queue", "-S", "seed=0,1", "-S", "loss=multisimilarity,circle", cwd=dest)
    dvc("queue", "start", "-j", "1", cwd=dest)
    status = _wait_for_queue(dest)
    assert status.count("Success") == 4, status
    dvc(
        "exp", "run", "--queue", "-S", "seed=7", cwd=dest
    )  # queued, not run: listed as not included
    out = run_checked(
        [sys.executable, "-m", "vpr.compare", "--out", "reports/compare", "--resamples", "500"],
        dest,
    )
    lines = out.splitlines()
    assert any(line.startswith("### synth_test: 24 queries") for line in lines)
    assert any(line.startswith("### synth_test (night)") for line in lines)
    rows = [
        line for line in lines if line.startswith("| baseline") or line.startswith("| loss=circle")
    ]
    assert len(rows) == 4  # both variants, all queries and night
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2" and all("±" in c for c in cells[2:6])  # 2 seeds: mean ± std per R@N
    circle = [c.strip() for c in rows[1].strip("|").split("|")]
    assert circle[6].count("[") == 1 and circle[7] in ("better", "worse", "within noise")
    if circle[7] == "within noise":  # and how many seeds would resolve 2 points
        assert "synth_test, loss=circle: within noise; " in out
    assert (
        "not included (queued)" in out and "dropped repeated runs" in out
    )  # HEAD's repro = seed 0 again
    page = (dest / "reports/compare/index.html").read_text()
    assert (
        "<svg" in page and "loss=circle" in page and (dest / "reports/compare/compare.md").is_file()
    )


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
