"""The stored geotagged database: image positions from the '@' names, and its descriptors (the stored ones
when they come from this very model, else extracted now)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vpr.data.filenames import NO_COORDINATES, PATTERN, name_problem, parse_name
from vpr.data.groundtruth import list_images, load_eval_set
from vpr.data.image_checks import Problems, check_images, warn
from vpr.errors import DataError

if TYPE_CHECKING:
    from vpr.eval.prepare import ImagePrep


@dataclass
class Database:
    paths: np.ndarray  # image paths
    utm: np.ndarray  # (n, 2) east, north
    zones: list  # (zone number, band letter) per image; ("", "") when the name has none
    latlon: np.ndarray  # (n, 2) lat, lon; NaN where unknown
    features_dir: str | None  # stored descriptors of this database, if any
    name: str


def open_database(
    database: str, gt_root: str = "data/gt", features_root: str = "data/features"
) -> Database:
    """An evaluation set name (data/gt/<set>, descriptors in data/features/<set>) or a folder of '@'-named
    images."""
    if os.path.isdir(os.path.join(gt_root, database)) and not os.path.isdir(database):
        paths = load_eval_set(os.path.join(gt_root, database)).database_paths
        features_dir = os.path.join(features_root, database)
    elif os.path.isdir(database):
        paths, features_dir = np.array(_usable_images(database)), None
    else:
        have = (
            sorted(d for d in os.listdir(gt_root) if d != "train") if os.path.isdir(gt_root) else []
        )
        raise DataError(
            f"--database {database}: neither an evaluation set under {gt_root} "
            f"({', '.join(have) or 'none built yet: run dvc repro'}) nor a folder of geotagged images"
        )
    names = [parse_name(p) for p in paths]
    utm_xy = np.array([[n.utm_east, n.utm_north] for n in names], dtype=np.float64).reshape(-1, 2)
    zones = [(n.utm_zone, n.utm_band) for n in names]
    latlon = np.array([_latlon(n) for n in names], dtype=np.float64).reshape(-1, 2)
    return Database(np.asarray(paths), utm_xy, zones, latlon, features_dir, database)


def _usable_images(folder: str) -> list[str]:
    """The images of a database folder whose names carry coordinates and that decode; the others are skipped
    with one DataWarning naming them (DataError when none is left). Checked before anything is extracted."""
    paths = list_images(folder)
    problems = Problems(folder)
    named = np.ones(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        reason = name_problem(p)
        if reason:
            named[i] = False
            problems.add(
                reason,
                os.path.relpath(p, folder),
                hint=None if reason == NO_COORDINATES else f"expected names like {PATTERN}",
            )
    keep = check_images(paths, "decode", problems, folder, only=named)
    if not keep.any():
        raise DataError(
            f"--database {problems.message().replace('images skipped', 'bad images, none usable')}; "
            f"rename or replace them"
        )
    if problems:
        warn(problems.message())
    return [p for p, k in zip(paths, keep) if k]


def _latlon(name) -> tuple[float, float]:
    try:
        return float(name.lat), float(name.lon)
    except ValueError:
        return to_latlon(name.utm_east, name.utm_north, name.utm_zone, name.utm_band)


def to_latlon(east: float, north: float, zone: str, band: str) -> tuple[float, float]:
    """WGS84 lat/lon of a UTM position; NaN when the zone is not known."""
    import utm

    try:
        lat, lon = utm.to_latlon(
            east, north, int(zone), band or None, northern=None if band else True, strict=False
        )
        return float(lat), float(lon)
    except (ValueError, TypeError, utm.error.OutOfRangeError):
        return float("nan"), float("nan")


def database_descriptors(
    db: Database,
    model,
    model_path: str,
    asked,
    device: str,
    stored_only: bool,
    batch_size: int = 64,
    log=print,
) -> tuple[np.ndarray, ImagePrep, str, dict]:
    """(descriptors, the image preparation they were extracted with, their storage dtype, the query method they
    were evaluated with: extract.query_method / majority_weight, empty = single). The stored ones
    when they come from this very model (and the ``asked`` preparation, if one is asked for); otherwise the
    database is extracted now with the asked preparation, else the stored descriptors', else the one the
    model was validated with (``stored_only``: DataError)."""
    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import ImagePrep
    from vpr.models.checkpoint import weights_md5

    ours = dict(
        spec=model.spec,
        descriptor_dim=model.descriptor_dim,
        weights_md5=weights_md5(model),
        epoch=model.epoch,
    )
    stored, info = _stored(db.features_dir) if db.features_dir else (None, {})
    stored_prep = ImagePrep.from_dict(info.get("prepare"), info.get("image_size")) if info else None
    if stored is not None:
        why = _mismatch(stored, info, ours, asked, stored_prep, len(db.paths))
        if why is None:
            method = {k: info[k] for k in ("query_method", "majority_weight") if k in info}
            return np.asarray(stored, dtype=np.float32), stored_prep, str(stored.dtype), method
        shown = asked or stored_prep
        reason = (
            f"{db.features_dir}/database.npy ({_describe(info)}) does not match {model_path} "
            f"({_describe({**ours, 'image_size': list(shown.size) if shown and shown.size else None})}): {why}"
        )
    elif db.features_dir:
        reason = f"no stored descriptors in {db.features_dir}"
    else:
        reason = f"{db.name} is a folder: no stored descriptors"
    if stored_only:
        hint = (
            f"re-run `dvc repro extract@{db.name}` with this model, or " if db.features_dir else ""
        )
        raise DataError(f"{reason}; {hint}drop --stored-only to extract the database here")
    prep = asked or stored_prep or model.default_prep
    log(
        f"note: {reason}; extracting the {len(db.paths)} database images now"
        f"{f' at {prep.size[0]}x{prep.size[1]} px ({prep.policy})' if prep.size else ' at their native sizes'}"
    )
    d = compute_descriptors(
        model, db.paths, prep, batch_size, 0, device, desc=f"{db.name} database"
    )
    return d, prep, "float32", {}


def _stored(features_dir: str):
    path = os.path.join(features_dir, "database.npy")
    if not os.path.isfile(path):
        return None, {}
    info_path = os.path.join(features_dir, "info.json")
    info = json.load(open(info_path)) if os.path.isfile(info_path) else {}
    return np.load(path, mmap_mode="r", allow_pickle=False), info


def _mismatch(
    stored: np.ndarray, info: dict, ours: dict, asked, stored_prep, num_paths: int
) -> str | None:
    """Why stored descriptors cannot be used with our model (None: they can)."""
    if stored.ndim != 2 or stored.shape[0] != num_paths:
        return f"{stored.shape[0]} descriptors for {num_paths} database images"
    if stored.shape[1] != ours["descriptor_dim"]:
        return f"descriptor size {stored.shape[1]} vs {ours['descriptor_dim']}"
    if info.get("spec") is not None and info["spec"] != ours["spec"]:
        diff = sorted(
            k
            for k in set(info["spec"]) | set(ours["spec"])
            if info["spec"].get(k) != ours["spec"].get(k)
        )
        return f"different model ({', '.join(diff)})"
    if info.get("weights_md5") and info["weights_md5"] != ours["weights_md5"]:
        return "same architecture, different weights"
    post = [k for k, plain in (("ensemble", []), ("scales", [1.0])) if info.get(k, plain) != plain]
    if (info.get("pca") or {}).get("dim"):
        post.append("pca")
    if post:
        return (
            f"stored descriptors are post-processed ({', '.join(post)}), a single model's are not"
        )
    if asked and asked != stored_prep:
        return f"extracted with {_prep_words(stored_prep)}, asked for {_prep_words(asked)}"
    return None


def _prep_words(prep) -> str:
    size = f"{prep.size[0]}x{prep.size[1]} px" if prep.size else "native size"
    return f"{size}, {prep.policy}" + (
        f" ({prep.side} side)" if prep.policy == "keep_aspect" else ""
    )


def _describe(d: dict) -> str:
    spec = d.get("spec") or {}
    parts = [
        f"{spec.get('backbone', '?')}+{spec.get('aggregator', '?')} {d.get('descriptor_dim', '?')}-D"
    ]
    epoch = d.get("checkpoint_epoch", d.get("epoch"))
    if epoch is not None:
        parts.append(f"epoch {epoch}")
    if d.get("weights_md5"):
        parts.append(f"weights md5 {d['weights_md5'][:8]}")
    if d.get("image_size"):
        parts.append(f"{d['image_size'][0]}x{d['image_size'][1]} px")
    return ", ".join(parts)
