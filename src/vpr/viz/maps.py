"""Dataset maps in UTM metres: where the database, the queries and the training places lie, and which
queries the model gets wrong (top-1 beyond the ground-truth radius). Vega-Lite specs, equal x/y scale."""

from __future__ import annotations

import numpy as np

from vpr.data.filenames import parse_name
from vpr.data.groundtruth import EvalSet, TrainSet
from vpr.eval.retrieval import correct_matrix

COLORS = {
    "database": "#b0b0b0",
    "queries": "#4c78a8",
    "top-1 correct": "#2ca02c",
    "top-1 wrong": "#d62728",
    "training places": "#9467bd",
}
ERROR_BINS = (25, 50, 100, 200, 400)  # metres; the first bin is the ground-truth radius


def top1_predictions(
    features_dir, database: np.ndarray, queries: np.ndarray, gt: EvalSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-1 database index per query, whether it is a positive, and its distance to the query (m)."""
    from vpr.eval.evaluate import retrieve_stored

    top1 = retrieve_stored(features_dir, database, queries, 1)
    correct = correct_matrix(top1, gt.positives, gt.num_database)[:, 0]
    dist = np.linalg.norm(gt.database_utm[top1[:, 0]] - gt.queries_utm, axis=1)
    return top1[:, 0], correct, dist


def error_bins(
    distances_m: np.ndarray, correct: np.ndarray, radius_m: float = 25.0
) -> dict[str, int]:
    """Queries per top-1 error: correct (a positive, within the radius), then rings of distance."""
    wrong = distances_m[~np.asarray(correct, bool)]
    edges = [radius_m] + [e for e in ERROR_BINS if e > radius_m]
    bins = {"correct": int(np.sum(correct))}
    for lo, hi in zip(edges, edges[1:]):
        # a wrong top-1 is beyond the radius by definition; the first ring also takes any rounding strays
        bins[f"{lo:.0f}-{hi:.0f} m"] = int(
            ((wrong < hi) & ((wrong >= lo) | (lo == radius_m))).sum()
        )
    bins[f"> {edges[-1]:.0f} m"] = int((wrong >= edges[-1]).sum())
    return bins


def _zone(paths) -> str:
    """'10S'-style UTM zone of a set (from its first image name; empty if the names do not say)."""
    if len(paths) == 0:
        return ""
    name = parse_name(str(paths[0]))
    return f"{name.utm_zone}{name.utm_band}"


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of an even, deterministic subsample of at most ``max_points`` of ``n`` items."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def scatter_map(
    layers: list[tuple[str, np.ndarray, np.ndarray | None]],
    title: str,
    zone: str = "",
    max_size: int = 460,
    point_size: float = 14,
) -> dict:
    """Points of several groups on one equal-scale UTM map.

    ``layers``: (group label, (n, 2) UTM east/north, optional bool "night" flags) drawn in order; the
    colour comes from COLORS (group label) and night points are triangles. Axes are metres from a round
    origin so the numbers stay short; the origin and zone are in the axis titles.
    """
    allpts = (
        np.concatenate([pts for _, pts, _ in layers if len(pts)])
        if any(len(p) for _, p, _ in layers)
        else np.zeros((1, 2))
    )
    origin = np.floor(allpts.min(0) / 100) * 100
    lo, hi = allpts.min(0) - origin, allpts.max(0) - origin
    span = np.maximum(hi - lo, 50.0)
    pad = 0.04 * span
    lo, hi = lo - pad, lo + span + pad
    scale = max_size / max(hi - lo)
    width, height = [int(round(v)) for v in (hi - lo) * scale]
    rows = []
    for label, pts, night in layers:
        for i, (e, n) in enumerate(pts - origin):
            rows.append(
                {
                    "east": round(float(e), 1),
                    "north": round(float(n), 1),
                    "group": label,
                    "light": "night" if night is not None and night[i] else "day / dusk",
                }
            )
    groups = [label for label, pts, _ in layers if len(pts)]
    where = f" (UTM {zone})" if zone else " (UTM)"
    return {
        "title": title,
        "width": max(width, 120),
        "height": max(height, 120),
        "data": {"values": rows},
        "mark": {"type": "point", "filled": True, "size": point_size, "opacity": 0.8},
        "encoding": {
            "x": {
                "field": "east",
                "type": "quantitative",
                "scale": {"domain": [lo[0], hi[0]], "nice": False},
                "title": f"east − {origin[0]:,.0f} m{where}",
            },
            "y": {
                "field": "north",
                "type": "quantitative",
                "scale": {"domain": [lo[1], hi[1]], "nice": False},
                "title": f"north − {origin[1]:,.0f} m",
            },
            "color": {
                "field": "group",
                "type": "nominal",
                "title": None,
                "scale": {"domain": groups, "range": [COLORS.get(g, "#333") for g in groups]},
            },
            "shape": {
                "field": "light",
                "type": "nominal",
                "title": None,
                "scale": {"domain": ["day / dusk", "night"], "range": ["circle", "triangle-up"]},
                "legend": {} if any(night is not None for _, _, night in layers) else None,
            },
        },
    }


def eval_set_map(
    gt: EvalSet, title: str, top1_correct: np.ndarray | None = None, max_database_points: int = 5000
) -> tuple[dict, str]:
    """Map of an evaluation set: database in grey, queries coloured by top-1 correctness (or plain, when
    there are no predictions); night queries as triangles. Returns (spec, caption)."""
    keep = _thin(gt.num_database, max_database_points)
    layers = [("database", gt.database_utm[keep], None)]
    caption = f"{gt.num_database:,} database images"
    if len(keep) < gt.num_database:
        caption += f" ({len(keep):,} shown, evenly thinned)"
    if top1_correct is None:
        layers.append(("queries", gt.queries_utm, gt.queries_night))
        caption += f", {gt.num_queries:,} queries"
    else:
        ok = np.asarray(top1_correct, bool)
        layers.append(("top-1 correct", gt.queries_utm[ok], gt.queries_night[ok]))
        layers.append(("top-1 wrong", gt.queries_utm[~ok], gt.queries_night[~ok]))
        caption += f", {gt.num_queries:,} queries: {int(ok.sum())} with a correct top-1, {int((~ok).sum())} wrong"
    if gt.queries_night.any():
        caption += f"; triangles = the {int(gt.queries_night.sum())} night queries"
    return scatter_map(layers, title, _zone(gt.database_paths)), caption


def train_places_maps(ts: TrainSet, max_points: int = 5000) -> list[tuple[dict, str]]:
    """One map per training city: the centroid of every training place."""
    counts = np.diff(ts.place_offsets)
    sums = (
        np.add.reduceat(ts.utm[ts.place_images], ts.place_offsets[:-1], axis=0)
        if len(ts.place_images)
        else np.zeros((0, 2))
    )
    centroids = sums / np.maximum(counts, 1)[:, None]
    maps = []
    for city in sorted(set(ts.place_city.tolist())):
        places = np.nonzero(ts.place_city == city)[0]
        keep = places[_thin(len(places), max_points)]
        zone = _zone(ts.paths[ts.images_of(int(places[0]))]) if len(places) else ""
        spec = scatter_map(
            [("training places", centroids[keep], None)], f"Training places: {city}", zone
        )
        images = int(counts[places].sum())
        caption = f"{city}: {len(places):,} places, {images:,} images (each dot = the mean position of a place)"
        maps.append((spec, caption))
    return maps
