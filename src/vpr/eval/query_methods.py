"""Query-side test-time methods of the VG benchmark's test.py (``extract.query_method``); the database is always
prepared by ``extract.resize``.

* ``single``: the query prepared like the database (the benchmark's single_query / hard_resize);
* ``central_crop``: the query scaled to cover ``image_size`` and centre-cropped;
* ``five_crops``: the query resized so its shorter side is S = the shorter side of ``image_size``, then its
  five S x S crops (corners and centre); the query's descriptor is the mean of the five;
* ``nearest_crop``: the five crops retrieve on their own; their results are merged by distance, each
  database image kept once (at its smallest distance);
* ``maj_voting``: as nearest_crop, after a vote: a database image found by several crops among their top 1,
  5 or 10 has its distances lowered by ``majority_weight`` x (number of crops that found it) / n.
"""

from __future__ import annotations

import numpy as np

from vpr.eval.prepare import ImagePrep

CROP_DEPTH = (
    20  # each crop retrieves its top 20 before the merge (the benchmark's), whatever k is asked
)


def crops_per_query(method: str) -> int:
    """How many descriptors a query has in queries.npy (rows query-major: query 0's crops, then query 1's...)."""
    return 5 if method in ("nearest_crop", "maj_voting") else 1


class FiveCrops:
    """Shorter side resized to S (the shorter side of ``size``), then the five S x S crops: (5, 3, S, S)."""

    def __init__(self, size, scale: float = 1.0):
        self.side = max(16, round(min(size) * scale))
        self.keep = ImagePrep(size, "keep_aspect", "shorter", scale)
        self.fixed_size, self.size = True, (self.side, self.side)

    def resized(self, height: int, width: int):
        return self.keep.resized(height, width)

    def output(self, height: int, width: int):
        return self.size

    def at_scale(self, factor: float) -> FiveCrops:
        return FiveCrops(self.keep.size, self.keep.scale * factor)

    def __call__(self, image, source_size=None):
        import torch
        from torchvision.transforms import v2

        return torch.stack(
            v2.functional.five_crop(self.keep(image, source_size), [self.side, self.side])
        )


def query_prep(prep: ImagePrep, method: str):
    """How queries are prepared under ``method`` (one of the schema's extract.query_method values; the database
    always uses ``prep``)."""
    if method == "single" or prep.size is None:
        return prep
    if method == "central_crop":
        return ImagePrep(prep.size, "cover_crop", prep.side, prep.scale)
    return FiveCrops(prep.size, prep.scale)


def merge_crops(
    distances: np.ndarray, indices: np.ndarray, k: int, method: str, majority_weight: float = 0.01
) -> np.ndarray:
    """(queries, k) predictions from the five crops' (5 * queries, k) results, rows query-major."""
    crops = crops_per_query(method)
    queries = len(indices) // crops
    dist = distances.reshape(queries, crops, -1).astype(np.float64)
    pred = indices.reshape(queries, crops, -1)
    out = np.full((queries, k), -1, dtype=np.int64)
    for q in range(queries):
        d = dist[q].copy()
        if method == "maj_voting":
            for n in (1, 5, 10):
                _vote(pred[q], d, n, majority_weight)
        order = np.argsort(d.ravel(), kind="stable")
        flat = pred[q].ravel()[order]
        flat = flat[flat >= 0]
        _, first = np.unique(
            flat, return_index=True
        )  # each database image once, at its smallest distance
        merged = flat[np.sort(first)][:k]
        out[q, : len(merged)] = merged
    return out


def _vote(pred: np.ndarray, dist: np.ndarray, n: int, weight: float) -> None:
    """Lower, in place, the distances of database images that several crops found among their top n."""
    top = pred[:, :n]
    values, counts = np.unique(top, return_counts=True)
    for value, count in zip(values[counts > 1], counts[counts > 1]):
        dist[:, :n][top == value] -= weight * count / n
