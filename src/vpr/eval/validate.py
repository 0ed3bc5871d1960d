"""Recall of a model on an evaluation set, in memory: the training loop's validation (and the calibration of the
model's confidence, vpr.eval.confidence, from the same descriptors)."""

from __future__ import annotations

import numpy as np

from vpr.data.groundtruth import EvalSet
from vpr.eval.extract import compute_descriptors
from vpr.eval.retrieval import correct_matrix, recall_at, search


def evaluate_model(
    model,
    eval_set: EvalSet,
    prep,
    ns=(1, 5, 10, 20),
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    calibrate_radius_m: float | None = None,
) -> dict:
    """Recall@N (percent) of ``model`` on ``eval_set``: keys 'R@1', 'R@5', ... ``prep``: the image preparation
    (vpr.eval.prepare.ImagePrep, or a size to stretch to), as the extract stage does it.
    ``calibrate_radius_m``: also 'calibration', the plain dict of a confidence calibration fitted on these
    queries (vpr.eval.confidence; the radius is the ground truth's), stored with the checkpoint."""
    database = compute_descriptors(
        model, eval_set.database_paths, prep, batch_size, num_workers, device, desc="val database"
    )
    queries = compute_descriptors(
        model, eval_set.queries_paths, prep, batch_size, num_workers, device, desc="val queries"
    )
    predictions = search(database, queries, max(ns))
    recalls = recall_at(predictions, eval_set.positives, eval_set.num_database, ns)
    metrics = {f"R@{n}": r for n, r in recalls.items()}
    if calibrate_radius_m is not None and eval_set.num_queries:
        metrics["calibration"] = calibrate(
            database, queries, eval_set, calibrate_radius_m
        ).to_dict()
    return metrics


def calibrate(database: np.ndarray, queries: np.ndarray, eval_set: EvalSet, radius_m: float):
    """The confidence calibration (vpr.eval.confidence.Calibration) of these descriptors: each query's top
    matches in the database, and in the database without the query's own place (its positives)."""
    from vpr.eval.confidence import DEPTH, fit_calibration, match_features, without_own_place

    deep = search(database, queries, DEPTH + int(eval_set.positives.counts.max(initial=0)))
    is_positive = correct_matrix(deep, eval_set.positives, eval_set.num_database)
    sims = _similarities(database, queries, deep)
    utm = np.asarray(eval_set.database_utm, np.float64)[deep]
    features = match_features(sims[:, :DEPTH], utm[:, :DEPTH], radius_m)
    rows, cols = without_own_place(is_positive, DEPTH)
    elsewhere = (
        match_features(
            np.take_along_axis(sims[rows], cols, 1),
            np.take_along_axis(utm[rows], cols[..., None], 1),
            radius_m,
        )
        if len(rows)
        else []
    )
    return fit_calibration(features, is_positive[:, 0], elsewhere, radius_m)


def _similarities(
    database: np.ndarray, queries: np.ndarray, found: np.ndarray, rows: int = 256
) -> np.ndarray:
    """Dot product of each query with each of its found database rows, a block of queries at a time."""
    out = np.empty(found.shape, np.float32)
    for start in range(0, len(found), rows):
        idx = found[start : start + rows]
        block = np.asarray(database[idx.ravel()], np.float32).reshape(*idx.shape, -1)
        out[start : start + rows] = np.einsum(
            "qkd,qd->qk", block, np.asarray(queries[start : start + rows], np.float32)
        )
    return out
