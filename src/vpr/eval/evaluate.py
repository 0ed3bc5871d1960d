"""Evaluate extracted descriptors against ground truth; build the recall table."""
from __future__ import annotations

import json
import os

import numpy as np
from tabulate import tabulate

from vpr.data.groundtruth import load_eval_set, load_info
from vpr.errors import DataError
from vpr.eval.knn import knn
from vpr.eval.retrieval import recall_at


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


def evaluate_features(features_dir, gt_dir, recall_values, index: str = "flat", index_settings=None) -> dict:
    """Recall@N over all queries, plus a ``night`` block when the set marks night queries.
    A query list without coordinates gets counts only (no recall can be computed). ``index``: the kNN method
    (vpr.eval.knn: flat = exact, ivf / hnsw = approximate). Descriptors and ground truth are memory-mapped:
    memory stays near one database chunk (see vpr.eval.knn), whatever the database size."""
    gt = load_eval_set(gt_dir, mmap=True)
    db, q = load_features(features_dir, (gt.num_database, gt.num_queries))
    if not gt.has_coordinates:
        return dict(num_queries=gt.num_queries, num_database=gt.num_database, queries_have_coordinates=False,
                    recall_skipped="the queries carry no coordinates")
    predictions = knn(db, q, max(recall_values), index, index_settings)
    out = {f"R@{n}": r for n, r in recall_at(predictions, gt.positives, gt.num_database, recall_values).items()}
    out.update(num_queries=gt.num_queries, num_database=gt.num_database,
               queries_without_positive=int((gt.positives.counts == 0).sum()))
    night = np.nonzero(gt.queries_night)[0]
    if len(night):
        sub = recall_at(predictions[night], gt.positives.subset(night), gt.num_database, recall_values)
        out["night"] = {**{f"R@{n}": r for n, r in sub.items()}, "num_queries": int(len(night))}
        info = load_info(gt_dir)   # build_gt records which rule chose the night queries, and the row name
        out["night"].update({k: info[f"night_{k}"] for k in ("name", "rule") if info.get(f"night_{k}")})
    return out


def recall_table(metric_files: dict, recall_values) -> str:
    """Markdown table, one row per set (and one per night subset), columns R@N."""
    headers = ["dataset"] + [f"R@{n}" for n in recall_values]
    rows, notes = [], []
    for name, path in metric_files.items():
        if not os.path.isfile(path):
            raise DataError(f"{path}: metrics not found; run evaluate@{name} first")
        with open(path) as fh:
            m = json.load(fh)
        if m.get("queries_have_coordinates") is False:
            rows.append([f"{name} (no coordinates)"] + [None] * len(recall_values))
            notes.append(f"{name}: its {m['num_queries']} queries carry no coordinates, so recall is not computed; "
                         f"see the predictions in reports/predictions/{name}/")
            continue
        rows.append([name] + [m.get(f"R@{n}") for n in recall_values])
        if "night" in m:
            label = m["night"].get("name") or f"{name} (night, {m['night']['num_queries']} queries)"
            rows.append([label] + [m["night"].get(f"R@{n}") for n in recall_values])
    table = tabulate(rows, headers=headers, tablefmt="github", floatfmt=".1f", missingval="n/a")
    return table + "".join(f"\n\n{note}" for note in notes)
