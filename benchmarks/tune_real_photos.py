"""How the real-photo recipe's training values were chosen: train in a project copy with the Cambridge profile under
several settings (learning rate, frozen stages, augmentation), then measure each model on the VALIDATION area only
(the test split is never looked at here):

* ``val<size>``: R@1/5/10/20 of the 68 validation queries against the 248 validation database images;
* ``val<size>all``: every validation image (316) as a query against the images of the OTHER capture points of the
  validation area (positives within 25 m): 4.6 x more queries than the first, so less noisy.

    python benchmarks/tune_real_photos.py PROJECT_COPY [--out benchmarks/results/real_photos_tuning.jsonl]

PROJECT_COPY: a clone of this repository whose params.yaml has the Cambridge profile (data profile cambridge, the
dataset read from a local copy, gt.train_places clusters, gt.train_min_images 2, train.images_per_place 2,
train.places_per_batch 32, train.image_size [160, 160]) and whose `dvc repro build_gt` has run. Each setting
runs `python stages/train.py` there (minutes each on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import yaml

AUGMENT = [
    {"name": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.0},
    {"name": "random_resized_crop", "scale": [0.6, 1.0], "ratio": [0.75, 1.333]},
]
SETTINGS = {  # name -> params overrides, in the order they ran (each on top of the previous params file)
    "A_lr1e-4_f3_e10": {
        "train.epochs": 10,
        "optimizers.adam.lr": 1e-4,
        "backbones.efficientnet_lite0.freeze": 3,
        "schedulers.multistep.milestones": [7],
        "augment": [],
    },
    "B_lr1e-4_f5_e10": {
        "train.epochs": 10,
        "optimizers.adam.lr": 1e-4,
        "backbones.efficientnet_lite0.freeze": 5,
    },
    "C_lr3e-4_f5_e10": {
        "train.epochs": 10,
        "optimizers.adam.lr": 3e-4,
        "backbones.efficientnet_lite0.freeze": 5,
    },
    "D_lr1e-4_f3_e10_aug": {
        "train.epochs": 10,
        "optimizers.adam.lr": 1e-4,
        "backbones.efficientnet_lite0.freeze": 3,
        "augment": AUGMENT,
    },
    "U_untrained": {"train.epochs": 0, "augment": []},
    "C2_lr3e-4_f5_e10": {
        "train.epochs": 10,
        "optimizers.adam.lr": 3e-4,
        "backbones.efficientnet_lite0.freeze": 5,
    },
    "E_lr1e-3_f5_e10": {
        "train.epochs": 10,
        "optimizers.adam.lr": 1e-3,
        "backbones.efficientnet_lite0.freeze": 5,
    },
    "F_lr3e-4_f3_e10": {
        "train.epochs": 10,
        "optimizers.adam.lr": 3e-4,
        "backbones.efficientnet_lite0.freeze": 3,
    },
    "G_lr3e-4_f5_e10_aug": {
        "train.epochs": 10,
        "optimizers.adam.lr": 3e-4,
        "backbones.efficientnet_lite0.freeze": 5,
        "augment": AUGMENT,
    },
}


def set_params(path: str, overrides: dict) -> None:
    params = yaml.safe_load(open(path))
    for key, value in overrides.items():
        node = params
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    with open(path, "w") as fh:
        yaml.safe_dump(params, fh, sort_keys=False)


def validation_all(model, val, size: int) -> list[float]:
    """R@1/5/10/20 of every validation image against the images of the other capture points."""
    from scipy.spatial import cKDTree

    from vpr.data.filenames import parse_name
    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import ImagePrep

    paths = list(val.database_paths) + list(val.queries_paths)
    d = compute_descriptors(model, paths, ImagePrep((size, size), "stretch"), 32, 1)
    point = np.array([parse_name(p).pano_id for p in paths])
    utm = np.r_[val.database_utm, val.queries_utm]
    sim = d @ d.T
    same = point[:, None] == point[None, :]
    sim[same] = -9
    top = np.argsort(-sim, 1)[:, :20]
    near = cKDTree(utm).query_ball_point(utm, 25.0)
    hits = [
        [
            bool(set(top[i, :n]) & (set(near[i]) - set(np.nonzero(same[i])[0])))
            for n in (1, 5, 10, 20)
        ]
        for i in range(len(paths))
    ]
    return [round(100 * float(v), 1) for v in np.mean(hits, 0)]


def measure(project: str, name: str, overrides: dict) -> dict:
    from vpr.data.groundtruth import load_eval_set
    from vpr.eval.prepare import ImagePrep
    from vpr.eval.validate import evaluate_model
    from vpr.models.checkpoint import load_model

    set_params(os.path.join(project, "params.yaml"), overrides)
    start = time.time()
    subprocess.run(
        [sys.executable, "stages/train.py"], cwd=project, check=True, capture_output=True
    )
    out = dict(name=name, overrides=overrides, train_minutes=round((time.time() - start) / 60, 2))
    val = load_eval_set(os.path.join(project, "data/gt/val"))
    for which in ("best", "last"):
        model, ckpt = load_model(os.path.join(project, f"models/{which}.pt"))
        for size in (320, 160):
            rec = evaluate_model(
                model, val, ImagePrep((size, size), "stretch"), batch_size=32, num_workers=1
            )
            out[f"{which}{size}"] = [round(rec[f"R@{n}"], 1) for n in (1, 5, 10, 20)]
            out[f"{which}{size}all"] = validation_all(model, val, size)
        out[f"{which}_epoch"] = ckpt["epoch"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project")
    ap.add_argument("--out", default="benchmarks/results/real_photos_tuning.jsonl")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.abspath(args.project), "src"))
    for name, overrides in SETTINGS.items():
        row = measure(os.path.abspath(args.project), name, overrides)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
