"""The visualize stage, per evaluation set: prediction pictures and the recall@N curve."""

from __future__ import annotations

import csv
import os

import numpy as np

from vpr.data.groundtruth import load_eval_set
from vpr.eval.evaluate import load_features, retrieve_stored
from vpr.eval.retrieval import correct_matrix, recall_curve
from vpr.io import atomic_dir, atomic_file
from vpr.viz.predictions import pick_queries, prediction_picture, query_label


def picture_name(query: int) -> str:
    """One name per query, whatever its verdict: `dvc plots diff` pairs the pictures of two experiments by name."""
    return f"query_{query:05d}.jpg"


def visualize_set(
    features_dir,
    gt_dir,
    pictures_dir,
    curve_path,
    num_queries=8,
    top_k=5,
    only_wrong=False,
    curve_max_n=50,
    seed=0,
) -> int:
    gt = load_eval_set(gt_dir)
    db, q = load_features(features_dir, (gt.num_database, gt.num_queries))
    k = max(top_k, curve_max_n)
    predictions = retrieve_stored(features_dir, db, q, k)
    labelled = (
        gt.has_coordinates
    )  # a query list without coordinates: predictions only, no curve, grey frames
    curve = (
        recall_curve(predictions[:, :curve_max_n], gt.positives, gt.num_database)
        if labelled
        else []
    )
    with atomic_file(curve_path) as fh:
        w = csv.writer(fh)
        w.writerow(["N", "recall"])
        w.writerows([[n, round(float(r), 4)] for n, r in enumerate(curve, 1)])

    correct = correct_matrix(predictions[:, :top_k], gt.positives, gt.num_database)
    chosen = pick_queries(num_queries, correct[:, 0], only_wrong and labelled, seed)
    with atomic_dir(pictures_dir) as tmp:
        for qi in chosen:
            preds = predictions[qi, :top_k]
            dist = np.linalg.norm(gt.database_utm[preds] - gt.queries_utm[qi], axis=1)
            label = query_label(
                bool(gt.queries_night[qi]), bool(correct[qi, 0]) if labelled else None
            )
            pic = prediction_picture(
                str(gt.queries_paths[qi]),
                [str(p) for p in gt.database_paths[preds]],
                correct[qi] if labelled else [None] * len(preds),
                dist,
                query_label=label,
            )
            pic.save(os.path.join(tmp, picture_name(qi)), quality=90)
    return len(chosen)
