"""Pictures of a query and its top-k predictions: green frame = within the GT radius, red = wrong."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from vpr.data.images import load_image

GREEN, RED, GREY = (40, 180, 60), (220, 40, 40), (120, 120, 120)


def _tile(path: str, size, frame_color, label: str, frame: int = 4) -> Image.Image:
    h, w = size
    img = load_image(path).resize((w, h), Image.BILINEAR)
    tile = Image.new("RGB", (w + 2 * frame, h + 2 * frame + 14), (255, 255, 255))
    tile.paste(Image.new("RGB", (w + 2 * frame, h + 2 * frame), frame_color), (0, 0))
    tile.paste(img, (frame, frame))
    ImageDraw.Draw(tile).text((frame, h + 2 * frame + 1), label, fill=(0, 0, 0))
    return tile


def query_label(night: bool, correct: bool | None) -> str:
    """The query tile's label: the top-1 verdict is in the picture, since its file name is the query's alone
    (so `dvc plots diff` puts the same query of two experiments side by side); None: no coordinates."""
    name = "night query" if night else "query"
    return name if correct is None else f"{name}: top-1 {'correct' if correct else 'wrong'}"


def prediction_picture(
    query_path: str,
    prediction_paths,
    correct,
    distances_m,
    tile_size=(120, 160),
    query_label: str = "query",
) -> Image.Image:
    """One row: the query (grey frame), then each prediction framed green (correct) or red (wrong),
    labelled with its rank and distance to the query in metres."""
    tiles = [_tile(query_path, tile_size, GREY, query_label)]
    for rank, (path, ok, dist) in enumerate(zip(prediction_paths, correct, distances_m), 1):
        color = GREY if ok is None else GREEN if ok else RED  # None: the query has no coordinates
        tiles.append(
            _tile(
                path,
                tile_size,
                color,
                f"#{rank}  {dist:.0f} m" if np.isfinite(dist) else f"#{rank}",
            )
        )
    gap = 6
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    out = Image.new("RGB", (width, tiles[0].height), (255, 255, 255))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    return out


def pick_queries(
    num_queries: int, top1_correct: np.ndarray, only_wrong: bool, seed: int
) -> np.ndarray:
    """Sorted indices of the queries to draw (optionally only those whose top-1 is wrong)."""
    pool = np.nonzero(~top1_correct)[0] if only_wrong else np.arange(len(top1_correct))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(num_queries, len(pool)), replace=False))
