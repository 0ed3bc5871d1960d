"""The suite runner's own time (python -m vpr.suites run: planning, reading the experiment store, queueing,
starting the queue, polling it, the table and its page; everything but the DVC runs it launches) as a ratio of
the runs' time: <= 5 %.

    python benchmarks/bench_suites.py [--seeds 2] [--miniature]

A fresh git + DVC copy of this checkout with the shipped params (runs as long as the suites' on the embedded
city, about 3 min on 2 cores; --miniature: the tests' miniature city, runs of about a minute, where the
runner's fixed costs weigh 3 times more), repro'd once (not counted); then the `smoke` suite (2 variants x
--seeds seeds; the baseline's seed 0 is the copy's own commit) in one process. The runs' time is from the queue's start to the last run's experiment
commit, per wave; everything else of the command's wall time, the interpreter's start included, is the
runner's: the waits after the last run ended (the polling interval) count against the runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import CACHE, ROOT, Figure, load_average, save_json, standalone

REPO = CACHE / "suites_repo"
RECORD = CACHE / "suites_overhead.json"
MINIATURE = {  # the end-to-end tests' miniature city (tests/helpers.py TINY_SYNTHETIC and TINY)
    "synthetic": dict(
        image_size=[48, 64],
        train_cities=2,
        train_blocks=3,
        places_per_city=20,
        val_blocks=2,
        test_blocks=2,
        val_queries=20,
        test_queries=24,
        query_aspects=[[4, 3], [3, 4], [16, 9], [1, 1]],
    ),
    "train": {
        "epochs": 1,
        "image_size": [48, 64],
        "places_per_batch": 8,
        "images_per_place": 4,
        "num_workers": 0,
    },
    "extract": {"image_size": [48, 64], "batch_size": 32, "num_workers": 0},
    "viz": {"num_queries": 3, "curve_max_n": 20},
}


def _merge(base: dict, override: dict) -> dict:
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def prepare(miniature: bool) -> None:
    """The copy, its first `dvc repro` and a commit of its results (the suite's baseline at seed 0)."""
    from bench_dvc import _run, fresh_copy

    fresh_copy(REPO, (lambda params: _merge(params, MINIATURE)) if miniature else None)
    _run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=REPO)
    _run(["git", "add", "-A"], cwd=REPO)
    _run(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "repro"], cwd=REPO)


def _exp_times(names) -> dict:
    """Experiment name -> unix time of its commit (when DVC saved the run)."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(committerdate:unix)", "refs/exps"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    times = {
        ref.rsplit("/", 1)[-1]: int(t) for ref, t in (line.split() for line in out if line.strip())
    }
    return {n: times[n] for n in names if n in times}


def _startup_s() -> float:
    """The interpreter's start and the runner's imports (`python -m vpr.suites list`), median of 3."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "vpr.suites", "list"],
            cwd=REPO,
            capture_output=True,
            check=True,
            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        )
        runs.append(time.perf_counter() - t0)
    return sorted(runs)[1]


def run(seeds: str = "2", miniature: bool = False) -> list[Figure]:
    from vpr.suites import cli
    from vpr.suites.runner import Timing

    for k, v in (
        ("GIT_AUTHOR_NAME", "bench"),
        ("GIT_AUTHOR_EMAIL", "bench@localhost"),
        ("GIT_COMMITTER_NAME", "bench"),
        ("GIT_COMMITTER_EMAIL", "bench@localhost"),
    ):
        os.environ.setdefault(k, v)  # the queue's git commits need an identity
    prepare(miniature)
    load_before, timing = load_average(), Timing()
    t0 = time.perf_counter()
    code = cli.main(
        ["--repo", str(REPO), "run", "smoke", "--seeds", str(seeds), "--jobs", "1"], timing
    )
    wall = time.perf_counter() - t0 + _startup_s()
    if code != 0:
        return [
            Figure(
                "suite runner's own time / its runs' time",
                "not measured",
                "<= 0.05",
                None,
                f"python -m vpr.suites run smoke failed (exit {code})",
            )
        ]
    runs_s = 0.0
    for start, names in timing.waves:
        ends = _exp_times(names)
        runs_s += max(ends.values()) - start if ends else 0.0
    own = wall - runs_s
    record = dict(
        wall_s=wall,
        runs_s=runs_s,
        own_s=own,
        phases=timing.own,
        runs=sum(len(n) for _, n in timing.waves),
        miniature=miniature,
        load_before=load_before,
        load_after=load_average(),
    )
    save_json(RECORD, record)
    ratio = own / runs_s if runs_s else float("inf")
    return [
        Figure(
            f"suite runner's own time / its runs' time (smoke suite, {record['runs']} runs, "
            f"{'miniature city' if miniature else 'shipped params'})",
            f"{ratio:.3f}",
            "<= 0.05",
            ratio <= 0.05,
            f"own {own:.1f} s of {wall:.1f} s wall (runner's phases: "
            + ", ".join(f"{k} {v:.1f}" for k, v in timing.own.items())
            + f"; the rest: interpreter start and the wait after the last run ended); runs {runs_s:.0f} s; "
            f"load average {load_before[0]:.1f} before",
            record,
        )
    ]


if __name__ == "__main__":
    standalone(__doc__, run)
