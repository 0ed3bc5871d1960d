"""kNN retrieval with faiss and recall@N, vectorised (no per-query Python loop).

A query counts at N if any of its top-N database images is a positive (within the GT radius);
queries without any positive stay in the denominator as misses. Recalls are in percent.
"""

from __future__ import annotations

import numpy as np

from vpr.data.groundtruth import Positives
from vpr.eval.knn import flat_search


def search(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices (num_queries, k) of the ``k`` nearest database descriptors (L2), nearest first; equal distances:
    the lower database row first. Exact (the float32 distances faiss IndexFlatL2 computes, one matrix product
    per block), a chunk of the database at a time (vpr.eval.knn.flat_search): any size, float16 or not."""
    return flat_search(database, queries, k)


def retrieve(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    query_method: str = "single",
    majority_weight: float = 0.01,
    index: str = "flat",
    settings: dict | None = None,
) -> np.ndarray:
    """Top-k database indices per query (vpr.eval.knn's ``index``); with a query method that keeps five crops
    per query (nearest_crop, maj_voting: ``queries`` has five rows per query) the crops' results are merged
    as the VG benchmark does (vpr.eval.query_methods)."""
    from vpr.eval.knn import knn
    from vpr.eval.query_methods import CROP_DEPTH, crops_per_query, merge_crops

    if crops_per_query(query_method) == 1:
        return knn(database, queries, k, index, settings)
    found = knn(database, queries, max(k, CROP_DEPTH), index, settings)
    return merge_crops(
        _distances(database, queries, found),
        found,
        min(k, len(database)),
        query_method,
        majority_weight,
    )


def _distances(
    database: np.ndarray, queries: np.ndarray, found: np.ndarray, rows: int = 1024
) -> np.ndarray:
    """Squared L2 distance of each query row to each of its found database rows (inf where none was found)."""
    out = np.full(found.shape, np.inf, dtype=np.float64)
    for start in range(0, len(found), rows):
        idx = found[start : start + rows]
        vectors = np.asarray(database[np.clip(idx, 0, None).ravel()], dtype=np.float32).reshape(
            *idx.shape, -1
        )
        d = ((vectors - np.asarray(queries[start : start + rows], np.float32)[:, None]) ** 2).sum(
            -1
        )
        out[start : start + rows] = np.where(idx >= 0, d, np.inf)
    return out


def correct_matrix(predictions: np.ndarray, positives: Positives, num_database: int) -> np.ndarray:
    """Boolean (num_queries, k): is prediction [q, r] a positive of query q."""
    nq = len(predictions)
    pos_keys = (
        np.repeat(np.arange(nq, dtype=np.int64), positives.counts) * num_database
        + positives.indices
    )
    if not pos_keys.size:
        return np.zeros(predictions.shape, bool)
    if (pos_keys[1:] < pos_keys[:-1]).any():  # Positives.from_lists sorts each query's list already
        pos_keys = np.sort(pos_keys)
    pred_keys = np.arange(nq, dtype=np.int64)[:, None] * num_database + predictions
    at = np.minimum(np.searchsorted(pos_keys, pred_keys), len(pos_keys) - 1)
    return (pos_keys[at] == pred_keys) & (
        predictions >= 0
    )  # -1: an approximate index found fewer than k


NO_HIT = np.iinfo(
    np.int64
).max  # first-correct rank of a query with no positive among its retrieved images


def first_correct_rank(
    predictions: np.ndarray, positives: Positives, num_database: int
) -> np.ndarray:
    """0-based rank of the first correct prediction per query; ``NO_HIT`` (larger than any N) otherwise.

    Not the number of columns: with a database smaller than N, ``rank < N`` would then hold for a query
    with no positive at all."""
    correct = correct_matrix(predictions, positives, num_database)
    return np.where(correct.any(1), correct.argmax(1), NO_HIT)


def _check_depth(predictions: np.ndarray, num_database: int, n: int) -> None:
    """Recall@N needs the top min(N, database size) of every query; fewer retrieved columns would undercount."""
    if predictions.shape[1] < min(n, num_database):
        raise ValueError(
            f"recall@{n} needs the top {min(n, num_database)} of each query but only "
            f"{predictions.shape[1]} were retrieved"
        )


def recall_at(
    predictions: np.ndarray, positives: Positives, num_database: int, ns
) -> dict[int, float]:
    """Recall@N in percent for each N in ``ns``; a database smaller than N gives its whole ranking."""
    rank = first_correct_rank(predictions, positives, num_database)
    for n in ns:
        _check_depth(predictions, num_database, n)
    return {int(n): float((rank < n).mean() * 100) if len(rank) else 0.0 for n in ns}


def recall_curve(predictions: np.ndarray, positives: Positives, num_database: int) -> np.ndarray:
    """Recall@N (percent) for N = 1 .. k (k = the retrieved columns)."""
    rank = first_correct_rank(predictions, positives, num_database)
    k = predictions.shape[1]
    return (
        np.array([(rank < n).mean() * 100 for n in range(1, k + 1)]) if len(rank) else np.zeros(k)
    )
