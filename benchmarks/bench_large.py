"""A 1,000,000-image database: float16 descriptors in memory-mapped .npy files, evaluated with the exact flat
search in chunks (peak resident memory of the evaluation vs the descriptor bytes) and with the approximate
indexes (their recall loss vs flat, their time and memory).

Each evaluation runs in a fresh process whose peak resident set size (ru_maxrss, from wait4) is recorded:
once the library call (vpr.eval.evaluate.evaluate_features) and once the whole evaluate stage
(stages/evaluate.py: params validation, which imports torch, included).

    python benchmarks/bench_large.py [--quick] [--hnsw]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import CACHE, ROOT, Figure, save_json, shipped_params, standalone

NUM_DATABASE, NUM_QUERIES, DIM = 1_000_000, 1000, 512


def dataset(num_database=NUM_DATABASE, num_queries=NUM_QUERIES, dim=DIM, seed=0):
    """(features dir, gt dir) under the cache, made once: positions over a square with ~13 database images
    within 25 m of a query (SF-XS-like density), descriptors varying smoothly with position plus noise."""
    from vpr.data.groundtruth import EvalSet, positives_within, save_eval_set

    root = CACHE / f"large_{num_database}"
    features, gt = root / "features", root / "gt"
    if (root / ".done").exists():
        return features, gt
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(num_database / 0.0068))
    db_xy = rng.uniform(0, side, (num_database, 2))
    q_xy = rng.uniform(0, side, (num_queries, 2))
    freq = rng.normal(scale=1 / 20.0, size=(2, dim))
    phase = rng.uniform(0, 2 * np.pi, dim)
    features.mkdir(parents=True, exist_ok=True)

    def write(path, xy, noise):
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(len(xy), dim))
        for s in range(0, len(xy), 65536):
            d = np.cos(xy[s : s + 65536] @ freq + phase) + noise * rng.normal(
                size=(len(xy[s : s + 65536]), dim)
            )
            out[s : s + 65536] = d / np.linalg.norm(d, axis=1, keepdims=True)
        out.flush()
        del out

    write(features / "database.npy", db_xy, 1.0)
    write(features / "queries.npy", q_xy, 2.0)
    save_eval_set(
        EvalSet(
            np.array([f"database/{i:07d}.jpg" for i in range(num_database)]),
            np.array([f"queries/{i:04d}.jpg" for i in range(num_queries)]),
            db_xy,
            q_xy,
            positives_within(db_xy, q_xy, 25.0),
            np.zeros(num_queries, bool),
        ),
        gt,
    )
    (root / ".done").write_text("ok")
    return features, gt


def _child(features, gt, index, settings):
    """Runs in the measured process."""
    import resource

    sys.path.insert(0, str(ROOT / "src"))
    from vpr.eval.evaluate import evaluate_features

    start = time.perf_counter()
    metrics = evaluate_features(features, gt, [1, 5, 10, 20], index, json.loads(settings)).metrics
    print(
        json.dumps(
            dict(
                metrics=metrics,
                seconds=time.perf_counter() - start,
                self_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            )
        )
    )


def _measured(args, cwd=None) -> tuple[str, int, float]:
    """(stdout, peak RSS in bytes, wall seconds) of a child process, reaped with wait4 for its resource usage."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{args} failed:\n{err.read().decode()[-3000:]}")
    return out, usage.ru_maxrss * 1024, wall  # ru_maxrss is in KiB on Linux


def evaluate_library(features, gt, index="flat", settings=None) -> dict:
    out, peak, wall = _measured(
        [
            sys.executable,
            __file__,
            "--child",
            str(features),
            str(gt),
            index,
            json.dumps(settings or {}),
        ]
    )
    result = json.loads(out.strip().splitlines()[-1])
    return dict(result, peak_rss=peak, wall=wall)


def evaluate_stage(features, gt, index="flat", settings=None) -> dict:
    """stages/evaluate.py in a box of links (this checkout's stages/ and src/, the cached data)."""
    import yaml

    box = CACHE / "large_box"
    for sub in ("data/gt", "data/features", "metrics/eval"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    # stages/ is copied, not linked: a stage script finds its checkout (and chdirs there) from its own path
    shutil.rmtree(box / "stages", ignore_errors=True)
    if (box / "stages").is_symlink():
        (box / "stages").unlink()
    shutil.copytree(ROOT / "stages", box / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for link, target in (
        ("src", ROOT / "src"),
        ("data/gt/large", gt),
        ("data/features/large", features),
    ):
        if not (box / link).is_symlink():
            (box / link).symlink_to(target)
    params = shipped_params()
    params["data"]["test"] = {"large": "synth/test"}
    params["eval"]["index"] = index
    params["eval"].setdefault(index, {}).update(settings or {})
    (box / "params.yaml").write_text(yaml.safe_dump(params))
    _, peak, wall = _measured([sys.executable, "stages/evaluate.py", "large"], cwd=box)
    return dict(
        metrics=json.loads((box / "metrics/eval/large.json").read_text()), peak_rss=peak, wall=wall
    )


def run(quick: bool = False, hnsw: bool = False) -> list[Figure]:
    features, gt = dataset()
    desc_bytes = os.path.getsize(features / "database.npy") + os.path.getsize(
        features / "queries.npy"
    )
    flat = evaluate_library(features, gt)
    stage = evaluate_stage(features, gt)
    runs = {"flat": flat, "flat (stage)": stage}
    approx = (
        [("ivf", {}), ("ivf", {"probe": 128}), ("ivf", {"encoding": "fp16"})]
        if not quick
        else [("ivf", {})]
    )
    if hnsw:
        approx.append(("hnsw", {}))
    for index, settings in approx:
        runs[f"{index} {settings}"] = evaluate_library(features, gt, index, settings)
    save_json(CACHE / "large_last.json", runs)
    gib = lambda b: b / 2**30  # noqa: E731
    r1 = lambda m: m["metrics"]["R@1"]  # noqa: E731
    figures = [
        Figure(
            "1M float16 evaluation, flat search: peak memory / descriptor bytes",
            f"{flat['peak_rss'] / desc_bytes:.3f}",
            "<= 1.3",
            flat["peak_rss"] / desc_bytes <= 1.3,
            f"peak RSS {gib(flat['peak_rss']):.2f} GiB for {gib(desc_bytes):.2f} GiB of float16 descriptors "
            f"(1,000,000 + 1,000 x 512); {flat['seconds']:.0f} s; "
            f"R@1/5/10/20 = {', '.join(str(round(flat['metrics'][f'R@{n}'], 1)) for n in (1, 5, 10, 20))}",
            flat,
        ),
        Figure(
            "1M float16 evaluation, whole evaluate stage: peak memory / descriptor bytes",
            f"{stage['peak_rss'] / desc_bytes:.3f}",
            "<= 1.3",
            stage["peak_rss"] / desc_bytes <= 1.3,
            f"peak RSS {gib(stage['peak_rss']):.2f} GiB (includes importing torch for the params check); "
            f"{stage['wall']:.0f} s; recalls equal to the library call: "
            f"{all(stage['metrics'][f'R@{n}'] == flat['metrics'][f'R@{n}'] for n in (1, 5, 10, 20))}",
            stage,
        ),
    ]
    for name, m in runs.items():
        if name.startswith(("ivf", "hnsw")):
            loss = r1(flat) - r1(m)
            figures.append(
                Figure(
                    f"1M approximate index {name}: R@1 loss vs flat",
                    f"{loss:.1f} points",
                    "reported",
                    None,
                    f"R@1 {r1(m):.1f} vs {r1(flat):.1f}, R@20 {m['metrics']['R@20']:.1f} vs {flat['metrics']['R@20']:.1f}; "
                    f"{m['seconds']:.0f} s (build + search) vs flat {flat['seconds']:.0f} s; "
                    f"peak memory {m['peak_rss'] / desc_bytes:.2f} x descriptor bytes",
                    m,
                )
            )
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:6])
        sys.exit(0)
    standalone(__doc__, run)
