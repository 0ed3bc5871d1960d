"""`dvc exp run` changing only a visualize or an evaluate param, against a full `dvc repro`, in a throw-away
git + DVC copy of this checkout with the shipped (default) params.

The full repro takes minutes, so it is measured once and kept in the cache (with the commit it ran on and the
load of the machine); ``--full-repro`` measures it again. The experiments are measured every time.

    python benchmarks/bench_dvc.py [--full-repro]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from common import standalone, CACHE, ROOT, Figure, load_average, save_json

REPO = CACHE / "dvc_repo"
FULL = CACHE / "dvc_full_repro.json"
ENV = {**os.environ, "TQDM_DISABLE": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench",
       "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def _run(args, cwd=REPO) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr, seconds


def _dvc(*args) -> tuple[str, float]:
    return _run([sys.executable, "-m", "dvc", *args])


def _ran(output: str) -> list[str]:
    return sorted({line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")})


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def full_repro() -> dict:
    """A fresh copy of the checkout (tracked and new files, no outputs), then a timed `dvc repro`."""
    shutil.rmtree(REPO, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and (not f.startswith(("data/", "models/", "reports/", "metrics/"))
                                     or f.startswith("data/lists/")):
            (REPO / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, REPO / f)
    (REPO / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"])
    _run(["git", "add", "-A"])
    _run(["git", "commit", "-q", "-m", "benchmark copy"])
    load_before = load_average()
    out, seconds = _dvc("repro")
    record = dict(seconds=seconds, stages=_ran(out), commit=_commit(), load_before=load_before,
                  load_after=load_average(), when=time.strftime("%Y-%m-%d %H:%M"))
    _run(["git", "add", "-A"])
    _run(["git", "commit", "-q", "-m", "repro"])
    save_json(FULL, record)
    return record


def run(full_repro: bool = False) -> list[Figure]:
    if full_repro or not FULL.exists() or not (REPO / "dvc.lock").exists():
        repro = full_repro()
        how = "measured in this run"
    else:
        repro = json.loads(FULL.read_text())
        how = f"measured {repro['when']} at commit {repro['commit']}, kept in {FULL.relative_to(ROOT)}"
    figures = []
    for label, change in (("visualize", "viz.num_queries=4"), ("evaluate", "eval.index=ivf")):
        _dvc("exp", "run", "-S", change)                       # warm-up: DVC's own caches, the OS file cache
        out, seconds = _dvc("exp", "run", "-S", change.replace("=4", "=5").replace("=ivf", "=flat"))
        ratio = seconds / repro["seconds"]
        figures.append(Figure(
            f"dvc exp run changing a {label} param / full dvc repro", f"{ratio:.3f}", "<= 0.05", ratio <= 0.05,
            f"{seconds:.1f} s (stages run: {', '.join(_ran(out))}) vs full repro {repro['seconds']:.0f} s "
            f"({how}; load average {repro['load_before'][0]:.1f} before it)",
            dict(seconds=seconds, stages=_ran(out), repro=repro, load=load_average())))
    # where the seconds of an experiment go: each stage script alone (imports and params check included)
    parts = {}
    for stage in (["stages/evaluate.py", "synth_test"], ["stages/recall_table.py"], ["stages/visualize.py", "synth_test"],
                  ["stages/report.py"]):
        parts[" ".join(stage)] = round(_run([sys.executable, *stage])[1], 2)
    _, parts["python -m dvc status"] = _dvc("status")
    figures.append(Figure("stage scripts alone (s)", ", ".join(f"{k} {v:.1f}" for k, v in parts.items()), "reported",
                          None, "", parts))
    return figures


if __name__ == "__main__":
    standalone(__doc__, run)
