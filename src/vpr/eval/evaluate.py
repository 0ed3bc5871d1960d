"""Evaluate extracted descriptors against ground truth; build the recall table."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from tabulate import tabulate

from vpr.data.groundtruth import load_eval_set, load_info
from vpr.errors import DataError
from vpr.eval.retrieval import NO_HIT, first_correct_rank, recall_at


def load_features(features_dir: str | os.PathLike, expected=None) -> tuple[np.ndarray, np.ndarray]:
    """(database, queries) descriptors; checks their counts against the ground truth if given (a query method
    that keeps five crops stores five rows per query)."""
    features_dir = os.fspath(features_dir)
    try:
        db = np.load(os.path.join(features_dir, "database.npy"), mmap_mode="r", allow_pickle=False)
        q = np.load(os.path.join(features_dir, "queries.npy"), mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(
            f"{features_dir}: descriptors not found; run the extract stage first"
        ) from None
    if expected is not None:
        from vpr.eval.query_methods import crops_per_query

        rows = crops_per_query(features_info(features_dir)["query_method"])
        if (len(db), len(q)) != (expected[0], expected[1] * rows):
            raise DataError(
                f"{features_dir}: {len(db)} database / {len(q)} query descriptors but the ground truth "
                f"has {expected[0]} / {expected[1]}{f' (x{rows} crops)' if rows > 1 else ''}; re-run extract"
            )
    return db, q


def features_info(features_dir: str | os.PathLike) -> dict:
    """How the stored descriptors were made (info.json), with the query method filled in for older ones."""
    path = os.path.join(os.fspath(features_dir), "info.json")
    info = json.load(open(path)) if os.path.isfile(path) else {}
    return {"query_method": "single", "majority_weight": 0.01, **info}


def retrieve_stored(
    features_dir, db: np.ndarray, q: np.ndarray, k: int, index: str = "flat", settings=None
):
    """Top-k predictions of stored descriptors, with the query method they were extracted for."""
    from vpr.eval.retrieval import retrieve

    info = features_info(features_dir)
    return retrieve(db, q, k, info["query_method"], info["majority_weight"], index, settings)


@dataclass
class Evaluation:
    metrics: dict  # recall@N (percent), counts, the night block: metrics/eval/<set>.json
    queries: list[
        dict
    ]  # one row per query: rank of its first correct match and its top-k (vpr.eval.query_results)


def evaluate_features(
    features_dir, gt_dir, recall_values, index: str = "flat", index_settings=None
) -> Evaluation:
    """Recall@N over all queries, plus a ``night`` block when the set marks night queries, and every query's
    result. A query list without coordinates gets counts and top-k only (no recall can be computed).
    ``index``: the kNN method (vpr.eval.knn: flat = exact, ivf / hnsw = approximate). Descriptors and ground
    truth are memory-mapped: memory stays near one database chunk (see vpr.eval.knn), whatever the size."""
    gt = load_eval_set(gt_dir, mmap=True)
    db, q = load_features(features_dir, (gt.num_database, gt.num_queries))
    predictions = retrieve_stored(features_dir, db, q, max(recall_values), index, index_settings)
    if not gt.has_coordinates:
        metrics = dict(
            num_queries=gt.num_queries,
            num_database=gt.num_database,
            queries_have_coordinates=False,
            recall_skipped="the queries carry no coordinates",
        )
        return Evaluation(metrics, query_rows(gt, predictions, None))
    out = {
        f"R@{n}": r
        for n, r in recall_at(predictions, gt.positives, gt.num_database, recall_values).items()
    }
    out.update(
        num_queries=gt.num_queries,
        num_database=gt.num_database,
        queries_without_positive=int((gt.positives.counts == 0).sum()),
    )
    night = np.nonzero(gt.queries_night)[0]
    if len(night):
        sub = recall_at(
            predictions[night], gt.positives.subset(night), gt.num_database, recall_values
        )
        out["night"] = {**{f"R@{n}": r for n, r in sub.items()}, "num_queries": int(len(night))}
        info = load_info(
            gt_dir
        )  # build_gt records which rule chose the night queries, and the row name
        out["night"].update(
            {k: info[f"night_{k}"] for k in ("name", "rule") if info.get(f"night_{k}")}
        )
    rank = first_correct_rank(predictions, gt.positives, gt.num_database)
    return Evaluation(out, query_rows(gt, predictions, rank))


def query_rows(gt, predictions: np.ndarray, rank: np.ndarray | None) -> list[dict]:
    """Per query: index, file name, night flag, number of positives, 1-based rank of the first correct match
    (None: none in the top k, or no coordinates) and the top-k database indices (into database_paths.npy)."""
    counts = gt.positives.counts if rank is not None else None
    return [
        dict(
            query=i,
            name=os.path.basename(str(gt.queries_paths[i])),
            night=int(bool(gt.queries_night[i])),
            positives=None if counts is None else int(counts[i]),
            first_correct=None if rank is None or rank[i] == NO_HIT else int(rank[i]) + 1,
            top=[int(j) for j in predictions[i] if j >= 0],
        )
        for i in range(len(predictions))
    ]


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
            notes.append(
                f"{name}: its {m['num_queries']} queries carry no coordinates, so recall is not computed; "
                f"see the predictions in reports/predictions/{name}/"
            )
            continue
        rows.append([name] + [m.get(f"R@{n}") for n in recall_values])
        if "night" in m:
            label = m["night"].get("name") or f"{name} (night, {m['night']['num_queries']} queries)"
            rows.append([label] + [m["night"].get(f"R@{n}") for n in recall_values])
    table = tabulate(rows, headers=headers, tablefmt="github", floatfmt=".1f", missingval="n/a")
    return table + "".join(f"\n\n{note}" for note in notes)
