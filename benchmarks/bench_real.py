"""The real-photo profile's first `dvc repro` (recipe real_photos: the Cambridge street-view set, read from a local
copy) in a fresh git + DVC copy of this checkout, stage by stage: <= 15 minutes on 2 CPU cores.

    python benchmarks/bench_real.py [--capability avx2]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from common import CACHE, ROOT, Figure, save_json, standalone

REPO = CACHE / "dvc_real_repo"
RECORD = CACHE / "dvc_real_repro.json"


def profile_params(params: dict, source: str) -> None:
    """params.yaml of the real-photo recipe, its data profile, the dataset read from the local copy ``source``."""
    from vpr import recipes

    recipe = recipes.RECIPES["real_photos"]
    params.update(recipes.apply(params, "real_photos"))
    params["data"] = params["data_profiles"][recipe.profile]
    params["datasets"]["cambridge_sv"].update(source="path", path=source)


def localize_agreement(repo) -> dict:
    """`python -m vpr.localize` with the trained model on the held-out test queries (their folder, as a user
    would pass it): how many top-1 matches are the database image evaluate ranked first."""
    import csv
    import subprocess
    import sys

    import yaml

    checkpoint = (
        f"models/{yaml.safe_load((repo / 'params.yaml').read_text())['extract']['checkpoint']}.pt"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vpr.localize",
            "data/raw/cambridge_sv/test/queries",
            "--model",
            checkpoint,
            "--database",
            "cambridge_test",
            "--json",
            "--no-pictures",
            "--top-k",
            "1",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo / "src")},
    )
    if proc.returncode:
        raise SystemExit(f"localize failed: {proc.stderr.strip().splitlines()[-1]}")
    import numpy as np

    database = np.load(
        repo / "data" / "gt" / "cambridge_test" / "database_paths.npy", allow_pickle=False
    )
    with open(repo / "metrics" / "eval" / "cambridge_test.queries.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    first = {r["name"]: Path(str(database[int(r["top"].split()[0])])).name for r in rows}
    localized = {
        Path(r["photo"]).name: Path(r["matches"][0]["image"]).name for r in json.loads(proc.stdout)
    }
    same = sum(first.get(photo) == image for photo, image in localized.items())
    return dict(photos=len(localized), queries=len(first), top1_agree=same, checkpoint=checkpoint)


def _median_seconds(fn, reps: int = 3) -> float:
    import statistics
    import time

    fn()  # warm-up: first-call allocations
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stage_floors(repo, record: dict) -> dict:
    """What the network alone costs in the train and extract stages: pure forward + backward of every training
    batch (random tensors of the batch shape) and pure forward of every image each validation and the
    extraction prepare, with the repo's model; the stages' seconds over these are their ratios to the floor."""
    import torch
    import yaml

    from vpr.models.network import build_model, model_spec

    params = yaml.safe_load((repo / "params.yaml").read_text())
    train, extract = params["train"], params["extract"]
    model = build_model(model_spec(params, train["image_size"]))
    batch = train["places_per_batch"] * train["images_per_place"]
    steps = train["epochs"] * (record["sizes"]["train"]["num_places"] // train["places_per_batch"])
    x = torch.randn(batch, 3, *train["image_size"])
    trainable = [p for p in model.parameters() if p.requires_grad]

    def step():
        model.train()
        model(x).pow(2).sum().backward()
        for p in trainable:
            p.grad = None

    y = torch.randn(32, 3, *extract["image_size"])

    def forward():
        model.eval()
        with torch.inference_mode():
            model(y)

    per_image = _median_seconds(forward) / len(y)
    val = record["sizes"]["val"]
    val_images = (train["epochs"] + 1) * (val["num_database"] + val["num_queries"])
    test = record["sizes"]["cambridge_test"]
    floors = dict(
        train=steps * _median_seconds(step) + val_images * per_image,
        **{"extract@cambridge_test": (test["num_database"] + test["num_queries"]) * per_image},
    )
    return {
        stage: dict(floor_s=f, stage_s=record["split"][stage], ratio=record["split"][stage] / f)
        for stage, f in floors.items()
    }


def run(capability: str = "") -> list[Figure]:
    from bench_dvc import fresh_copy, repro_by_stage

    from vpr.data.cambridge import local_copy

    source = local_copy(str(ROOT))
    if source is None:
        return [
            Figure(
                "real-photo profile: first dvc repro (s)",
                "not measured",
                "<= 900",
                None,
                "no local copy of the Cambridge photos (../shared/data/cambridge_streetview or $VPR_CAMBRIDGE_SV)",
            )
        ]
    fresh_copy(REPO, lambda params: profile_params(params, source))
    record = repro_by_stage(REPO, capability)
    record["recalls"] = json.loads((REPO / "metrics" / "eval" / "cambridge_test.json").read_text())
    record["localize"] = localize_agreement(REPO)
    record["sizes"] = {
        s: json.loads((REPO / "data" / "gt" / s / "info.json").read_text())
        for s in ("train", "val", "cambridge_test")
    }
    record["floors"] = stage_floors(REPO, record)
    save_json(RECORD, record)
    split = record["split"]
    slowest = max(split, key=split.get)
    floor = record["floors"].get(slowest)
    versus = f" ({floor['ratio']:.2f} x its floor: the network's pure compute)" if floor else ""
    r = record["recalls"]
    return [
        Figure(
            "real-photo profile (recipe real_photos, Cambridge): first dvc repro of a fresh copy (s)",
            f"{record['seconds']:.0f}",
            "<= 900",
            record["seconds"] <= 900,
            f"CPU kernels {record['cpu_capability']}; load average {record['load_before'][0]:.1f} before, "
            f"{record['load_after'][0]:.1f} after; slowest stage {slowest}{versus}; per stage: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in split.items())
            + f"; test R@1/5/10/20 = {r['R@1']:.1f} / {r['R@5']:.1f} / {r['R@10']:.1f} / {r['R@20']:.1f} (seed 0); localize with the trained model: top-1 = evaluate's on "
            f"{record['localize']['top1_agree']}/{record['localize']['photos']} test queries",
            record,
        )
    ]


if __name__ == "__main__":
    standalone(__doc__, run)
