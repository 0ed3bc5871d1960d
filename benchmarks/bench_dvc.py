"""`dvc exp run` changing only a visualize or an evaluate param, against a full `dvc repro`, in a throw-away
git + DVC copy of this checkout with the shipped (default) params.

The full repro takes minutes, so it is measured once and kept in the cache (with the commit it ran on and the
load of the machine); ``--full-repro`` measures it again, stage by stage (``dvc repro --single-item`` in
pipeline order: the per-stage split), and ``--capability avx2`` runs it with the CPU kernels of a lesser CPU
(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA), as a plain AVX2 laptop computes. The experiments are measured every
time.

    python benchmarks/bench_dvc.py [--full-repro] [--capability avx2]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from common import CACHE, ROOT, Figure, load_average, save_json, standalone

REPO = CACHE / "dvc_repo"
FULL = CACHE / "dvc_full_repro.json"
ENV = {
    **os.environ,
    "TQDM_DISABLE": "1",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def _run(args, cwd=REPO, env=None) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr, seconds


def _dvc(*args, env=None) -> tuple[str, float]:
    return _run([sys.executable, "-m", "dvc", *args], env=env)


def _ran(output: str) -> list[str]:
    return sorted(
        {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}
    )


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def _capability_env(capability: str) -> dict:
    if not capability:
        return ENV
    return {
        **ENV,
        "ATEN_CPU_CAPABILITY": capability.lower(),
        "ONEDNN_MAX_CPU_ISA": capability.upper(),
    }


def _stage_capability(env: dict) -> str:
    out, _ = _run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        cwd=ROOT,
        env=env,
    )
    return out.strip()


def fresh_copy(repo, edit_params=None) -> None:
    """A fresh git copy of this checkout at ``repo`` (tracked and new files, no outputs, no dvc.lock), with
    ``edit_params(params dict)`` applied to its params.yaml."""
    import yaml

    shutil.rmtree(repo, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and (
            not f.startswith(("data/", "models/", "reports/", "metrics/"))
            or f.startswith("data/lists/")
        ):
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    (repo / "dvc.lock").unlink(missing_ok=True)
    if edit_params:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        edit_params(params)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], cwd=repo)
    _run(["git", "add", "-A"], cwd=repo)
    _run(["git", "commit", "-q", "-m", "benchmark copy"], cwd=repo)


def repro_by_stage(repo, capability: str = "") -> dict:
    """`dvc repro --single-item` of every stage in pipeline order, each timed (their sum is the full repro)."""
    env = _capability_env(capability)
    load_before = load_average()
    order, _ = _run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=repo)
    split = {}
    for stage in order.split():
        _, split[stage] = _run(
            [sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=repo, env=env
        )
    record = dict(
        seconds=sum(split.values()),
        stages=list(split),
        split=split,
        commit=_commit(),
        cpu_capability=_stage_capability(env),
        load_before=load_before,
        load_after=load_average(),
        when=time.strftime("%Y-%m-%d %H:%M"),
    )
    _run(["git", "add", "-A"], cwd=repo)
    _run(["git", "commit", "-q", "-m", "repro"], cwd=repo)
    return record


def measure_full_repro(capability: str = "") -> dict:
    """A fresh copy of the checkout with the shipped params, then `dvc repro` stage by stage."""
    fresh_copy(REPO)
    record = repro_by_stage(REPO, capability)
    save_json(FULL, record)
    return record


def run(full_repro: bool = False, capability: str = "") -> list[Figure]:
    if full_repro or not FULL.exists() or not (REPO / "dvc.lock").exists():
        repro = measure_full_repro(capability)
        how = "measured in this run"
    else:
        repro = json.loads(FULL.read_text())
        how = f"measured {repro['when']} at commit {repro['commit']}, kept in {FULL.relative_to(ROOT)}"
    split = repro.get("split", {})
    figures = [
        Figure(
            "full dvc repro, fresh copy, shipped params (s)",
            f"{repro['seconds']:.0f}",
            "<= 300",
            repro["seconds"] <= 300,
            f"CPU kernels {repro.get('cpu_capability', '?')}; {how}; load average {repro['load_before'][0]:.1f} before; "
            "per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in split.items()),
            repro,
        )
    ]
    for label, change in (("visualize", "viz.num_queries=4"), ("evaluate", "eval.index=ivf")):
        _dvc("exp", "run", "-S", change)  # warm-up: DVC's own caches, the OS file cache
        out, seconds = _dvc("exp", "run", "-S", change.replace("=4", "=5").replace("=ivf", "=flat"))
        ratio = seconds / repro["seconds"]
        figures.append(
            Figure(
                f"dvc exp run changing a {label} param / full dvc repro",
                f"{ratio:.3f}",
                "<= 0.05",
                ratio <= 0.05,
                f"{seconds:.1f} s (stages run: {', '.join(_ran(out))}) vs full repro {repro['seconds']:.0f} s "
                f"({how}; load average {repro['load_before'][0]:.1f} before it)",
                dict(seconds=seconds, stages=_ran(out), repro=repro, load=load_average()),
            )
        )
    # where the seconds of an experiment go: each stage script alone (imports and params check included)
    parts = {}
    for stage in (
        ["stages/evaluate.py", "synth_test"],
        ["stages/recall_table.py"],
        ["stages/visualize.py", "synth_test"],
        ["stages/report.py"],
    ):
        parts[" ".join(stage)] = round(_run([sys.executable, *stage])[1], 2)
    _, parts["python -m dvc status"] = _dvc("status")
    figures.append(
        Figure(
            "stage scripts alone (s)",
            ", ".join(f"{k} {v:.1f}" for k, v in parts.items()),
            "reported",
            None,
            "",
            parts,
        )
    )
    return figures


if __name__ == "__main__":
    standalone(__doc__, run)
