"""Evaluate extracted descriptors against ground truth; build the recall table."""
from __future__ import annotations

import json
import os

import numpy as np
from tabulate import tabulate

from vpr.data.groundtruth import load_eval_set
from vpr.errors import DataError
from vpr.eval.retrieval import recall_at, search


def load_features(features_dir: str | os.PathLike, expected=None) -> tuple[np.ndarray, np.ndarray]:
    """(database, queries) descriptors; checks their counts against the ground truth if given."""
    features_dir = os.fspath(features_dir)
    try:
        db = np.load(os.path.join(features_dir, "database.npy"), mmap_mode="r", allow_pickle=False)
        q = np.load(os.path.join(features_dir, "queries.npy"), mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{features_dir}: descriptors not found; run the extract stage first") from None
    if expected is not None and (len(db), len(q)) != expected:
        raise DataError(f"{features_dir}: {len(db)} database / {len(q)} query descriptors but the ground truth has "
                        f"{expected[0]} / {expected[1]}; re-run extract")
    return db, q


def evaluate_features(features_dir, gt_dir, recall_values) -> dict:
    """Recall@N over all queries, plus a ``night`` block when the set marks night queries."""
    gt = load_eval_set(gt_dir)
    db, q = load_features(features_dir, (gt.num_database, gt.num_queries))
    predictions = search(db, q, max(recall_values))
    out = {f"R@{n}": r for n, r in recall_at(predictions, gt.positives, gt.num_database, recall_values).items()}
    out.update(num_queries=gt.num_queries, num_database=gt.num_database,
               queries_without_positive=int((gt.positives.counts == 0).sum()))
    night = np.nonzero(gt.queries_night)[0]
    if len(night):
        sub = recall_at(predictions[night], gt.positives.subset(night), gt.num_database, recall_values)
        out["night"] = {**{f"R@{n}": r for n, r in sub.items()}, "num_queries": int(len(night))}
    return out


def recall_table(metric_files: dict, recall_values) -> str:
    """Markdown table, one row per set (and one per night subset), columns R@N."""
    headers = ["dataset"] + [f"R@{n}" for n in recall_values]
    rows = []
    for name, path in metric_files.items():
        if not os.path.isfile(path):
            raise DataError(f"{path}: metrics not found; run evaluate@{name} first")
        with open(path) as fh:
            m = json.load(fh)
        rows.append([name] + [m.get(f"R@{n}") for n in recall_values])
        if "night" in m:
            rows.append([f"{name} (night, {m['night']['num_queries']} queries)"] +
                        [m["night"].get(f"R@{n}") for n in recall_values])
    return tabulate(rows, headers=headers, tablefmt="github", floatfmt=".1f")
