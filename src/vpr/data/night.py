"""Which queries of an evaluation set are night ones: the note field, a list of names, or a brightness
threshold (``data.night``)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageStat

from vpr.data.image_checks import SHOW, warn
from vpr.errors import DataError


def mean_brightness(path: str) -> float:
    """Mean grey level (0-255); JPEGs are decoded at 1/8 scale, which leaves the mean almost unchanged."""
    with Image.open(path) as img:
        img.draft("L", (max(img.width // 8, 1), max(img.height // 8, 1)))
        # 16-bit grey: convert("L") would clip it to white. 8 bits by vpr.data.images.to_rgb's rule (value >> 8),
        # not imported from there: build_gt, which runs this, does not depend on that module
        if img.mode == "I" or img.mode.startswith("I;16"):
            return float((np.clip(np.asarray(img), 0, 65535) >> 8).mean())
        return float(ImageStat.Stat(img.convert("L")).mean[0])


def read_name_list(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError(
            f"{path}: night list not found; create it (one query file name per line) or fix data.night"
        )
    with open(path) as fh:
        return [s for s in (line.strip() for line in fh) if s and not s.startswith("#")]


def night_subset(paths, names, queries_dir: str, spec: dict | None):
    """Night flags of the queries and what each rule selects. Without a spec: the note field says night
    (the synthetic city). With one: ``rule`` decides; every rule whose setting is known is counted."""
    by_note = np.array([n is not None and n.note.lower() == "night" for n in names], dtype=bool)
    if spec is None:
        return by_note, {}
    counts = {"note": int(by_note.sum())}
    masks = {"note": by_note}
    if spec.get("list"):
        wanted = set(read_name_list(spec["list"]))
        keys = [
            {os.path.basename(p), os.path.relpath(p, queries_dir), n.pano_id if n else None}
            for p, n in zip(paths, names)
        ]
        masks["list"] = np.array([bool(k & wanted) for k in keys], dtype=bool)
        matched = set().union(*(k & wanted for k in keys)) if keys else set()
        unmatched = sorted(wanted - matched)
        if unmatched:
            warn(
                f"{spec['list']}: {len(unmatched)} of {len(wanted)} names match no query of {queries_dir} "
                f"(e.g. {', '.join(unmatched[:SHOW])})"
            )
        counts["list"] = int(masks["list"].sum())
    brightness = np.array([mean_brightness(p) for p in paths])
    masks["brightness"] = brightness < spec["max_brightness"]
    counts["brightness"] = int(masks["brightness"].sum())
    rule = spec["rule"]
    info = dict(
        night_rule=rule,
        night_name=spec.get("name"),
        night_counts=counts,
        night_max_brightness=spec["max_brightness"],
    )
    return masks[rule], info
