"""Folder layouts that build_gt indexes: where the images of each set are and how they become ground truth.

Evaluation sets: ``<set>/{database,queries}/`` with ``@``-named images — the course (``sf_xs/val``,
``sf_xs/test``, ``tokyo_xs/test``) and the VG benchmark (``<name>/images/{train,val,test}``). A query
folder whose names carry no coordinates at all is a DataError, or, with ``unlabelled_queries``, a query
list (``--no_labels`` style): descriptors and predictions work, recall is skipped with a warning. Known set
sizes are checked as warnings.

Training sets: ``@``-named ``<city>/`` folders with note ``placeID_City`` (GSV-XS), or the original
GSV-Cities layout (read by :mod:`vpr.data.gsv_cities`); extra image folders join the training places
named by their note.

Bad images are handled by :mod:`vpr.data.image_checks` (reported by name, skipped or fatal with
``gt.strict``); night queries are picked by :mod:`vpr.data.night`.
"""

from __future__ import annotations

import os

import numpy as np

from vpr.data.filenames import NO_COORDINATES, PATTERN, name_problem, parse_name
from vpr.data.groundtruth import (
    EvalSet,
    Positives,
    list_images,
    positives_within,
    train_set_from_places,
)
from vpr.data.gsv_cities import gsv_cities_images
from vpr.data.image_checks import SHOW, Problems, check_images, warn
from vpr.data.night import night_subset
from vpr.errors import DataError

# Images per set in the course's archives (database, queries): a mismatch hints at a broken download.
KNOWN_SIZES = {
    "sf_xs/val": (8015, 7993),
    "sf_xs/test": (27191, 1000),
    "tokyo_xs/test": (12771, 315),
}


def _coordinates(paths, problems: Problems | None, base: str):
    """UTM (NaN where the name has none) and the parsed names (None where bad)."""
    utm = np.full((len(paths), 2), np.nan)
    names = []
    for i, p in enumerate(paths):
        try:
            n = parse_name(p)
        except DataError:
            names.append(None)
            if problems is not None:
                reason = name_problem(p) or NO_COORDINATES
                problems.add(
                    reason,
                    os.path.relpath(p, base),
                    hint=None if reason == NO_COORDINATES else f"expected names like {PATTERN}",
                )
            continue
        utm[i] = n.utm_east, n.utm_north
        names.append(n)
    return utm, names


# ------------------------------------------------------------------------------------ evaluation sets
def set_candidates(root: str, depth: int = 4) -> list[str]:
    """Folders under ``root`` holding both database/ and queries/ (to suggest a fix)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        if dirpath[len(root) :].count(os.sep) >= depth:
            dirnames[:] = []
        if {"database", "queries"} <= set(dirnames):
            found.append(dirpath)
    return sorted(found)


def _require_set_dir(set_dir: str) -> None:
    if os.path.isdir(os.path.join(set_dir, "database")) and os.path.isdir(
        os.path.join(set_dir, "queries")
    ):
        return
    dataset_root = (
        os.path.join(*set_dir.split(os.sep)[:3]) if set_dir.startswith("data" + os.sep) else set_dir
    )
    hint = set_candidates(dataset_root) if os.path.isdir(dataset_root) else []
    hint_text = (
        f"; folders that have both: {', '.join(hint[:SHOW])}"
        if hint
        else "; run the fetch stage or fix the folder in params.yaml (data:)"
    )
    raise DataError(f"{set_dir}: expected database/ and queries/ folders here{hint_text}")


def check_known_size(known_as: str | None, num_database: int, num_queries: int, where: str) -> None:
    expected = KNOWN_SIZES.get(known_as or "")
    if expected and expected != (num_database, num_queries):
        dataset = known_as.split("/")[0]
        warn(
            f"{where}: {num_database:,} database / {num_queries:,} query images, expected {expected[0]:,} / "
            f"{expected[1]:,} for {known_as}; an incomplete download? delete data/raw/{dataset} and re-run "
            f"fetch@{dataset}"
        )


def _unlabelled(set_dir: str, num_queries: int, reasons: Problems, allowed: bool) -> None:
    """No query name parses: a DataError naming what is wrong, or (``allowed``) a warning that recall is skipped."""
    why = reasons.summary()
    if PATTERN not in why:
        why += f"; expected names like {PATTERN}"
    head = f"{set_dir}/queries: none of the {num_queries} query names carries coordinates"
    if not allowed:
        raise DataError(
            f"{head} ({why}); rename them, or set gt.unlabelled_queries: true to use them as a query "
            f"list without recall"
        )
    warn(
        f"{head}: recall is skipped for this set; descriptors and predictions are still computed ({why})"
    )


def build_eval_index(
    set_dir: str,
    radius_m: float = 25.0,
    strict: bool = False,
    check: str = "header",
    night: dict | None = None,
    known_as: str | None = None,
    progress: bool = False,
    unlabelled_queries: bool = False,
):
    """Ground truth of ``<set_dir>/{database,queries}``; returns (EvalSet, extra info for info.json).
    ``unlabelled_queries``: queries whose names carry no coordinates at all are a query list (no recall)
    instead of a DataError."""
    set_dir = os.fspath(set_dir)
    _require_set_dir(set_dir)
    db = list_images(os.path.join(set_dir, "database"))
    qs = list_images(os.path.join(set_dir, "queries"))
    check_known_size(known_as, len(db), len(qs), set_dir)
    problems = Problems(set_dir)
    db_utm, _ = _coordinates(db, problems, set_dir)
    q_problems = Problems(f"{set_dir}/queries")
    q_utm, q_names = _coordinates(qs, q_problems, set_dir)
    labelled = any(n is not None for n in q_names)
    if labelled:
        problems.merge(
            q_problems
        )  # a few bad names: skipped with the others (or fatal with strict)
    else:
        _unlabelled(set_dir, len(qs), q_problems, unlabelled_queries)
    keep_db = check_images(db, check, problems, set_dir, progress, only=np.isfinite(db_utm).all(1))
    keep_q = check_images(
        qs, check, problems, set_dir, progress, only=np.isfinite(q_utm).all(1) if labelled else None
    )
    problems.report(strict)
    if not keep_db.any():
        raise DataError(
            f"{set_dir}/database: no usable image (names need '@east@north@...' coordinates)"
        )
    if not keep_q.any():
        raise DataError(f"{set_dir}/queries: no usable image")
    db, db_utm = [p for p, k in zip(db, keep_db) if k], db_utm[keep_db]
    qs, q_utm = [p for p, k in zip(qs, keep_q) if k], q_utm[keep_q]
    q_names = [n for n, k in zip(q_names, keep_q) if k]
    positives = (
        positives_within(db_utm, q_utm, radius_m)
        if labelled
        else Positives.from_lists([[]] * len(qs))
    )
    night_mask, night_info = night_subset(qs, q_names, os.path.join(set_dir, "queries"), night)
    info = dict(skipped_images=len(problems), **night_info)
    return EvalSet(np.array(db), np.array(qs), db_utm, q_utm, positives, night_mask), info


# ------------------------------------------------------------------------------------- training sets
def build_train_index(
    train_dir: str,
    min_images: int = 4,
    strict: bool = False,
    check: str = "header",
    progress: bool = False,
    places: dict | None = None,
):
    """Training places of ``train_dir`` (GSV-XS ``@`` city folders or original GSV-Cities); returns (TrainSet,
    extra info). ``places``: {train_places, place_m, place_headings} of the gt section (vpr.data.places); the
    default reads each place from the note field."""
    train_dir = os.fspath(train_dir)
    problems = Problems(train_dir)
    rule = (places or {}).get("train_places", "note")
    if os.path.isdir(os.path.join(train_dir, "Dataframes")):
        layout = "gsv-cities"
        paths, utm, place_of = gsv_cities_images(train_dir, problems)
    else:
        layout = "@ names"
        paths = list_images(train_dir)
        utm, names = _coordinates(paths, problems, train_dir)
        place_of = (
            _note_places(paths, names, utm, problems, train_dir)
            if rule == "note"
            else _position_places(paths, names, utm, problems, train_dir, places)
        )
    keep = check_images(paths, check, problems, train_dir, progress, only=np.isfinite(utm).all(1))
    problems.report(strict)
    if not keep.any():
        hint = (
            "; images named without a 'placeID_City' note can form places from positions and headings: "
            "gt.train_places: clusters"
            if rule == "note" and layout == "@ names"
            else ""
        )
        raise DataError(f"{train_dir}: no usable training image{hint}")
    train = train_set_from_places(
        [p for p, k in zip(paths, keep) if k],
        utm[keep],
        [pl for pl, k in zip(place_of, keep) if k],
        min_images,
        where=train_dir,
    )
    return train, dict(layout=layout, places=rule, skipped_images=len(problems))


def _note_places(paths, names, utm, problems: Problems, train_dir: str) -> list[str]:
    """The note field of each name (GSV-XS: placeID_City); images without one are set aside (UTM NaN)."""
    out = []
    for i, (p, n) in enumerate(zip(paths, names)):
        if n is not None and "_" not in n.note:  # GSV-XS notes are placeID_City, e.g. 284_Rome
            problems.add("without a 'placeID_City' note", os.path.relpath(p, train_dir))
            utm[i] = np.nan
        out.append(n.note if n is not None else "")
    return out


def _city_folder(path: str, train_dir: str) -> str:
    """``<city>`` of ``train_dir/<city>/...``; the training folder's own name for images directly in it."""
    rel = os.path.relpath(path, train_dir)
    return rel.split(os.sep)[0] if os.sep in rel else os.path.basename(train_dir)


def _position_places(
    paths, names, utm, problems: Problems, train_dir: str, places: dict
) -> list[str]:
    """Places from positions and headings (vpr.data.places); images without a heading are set aside."""
    from vpr.data.places import place_names

    headings = np.full(len(paths), np.nan)
    for i, (p, n) in enumerate(zip(paths, names)):
        try:
            headings[i] = float(n.heading) if n is not None else np.nan
        except ValueError:
            pass
        if n is not None and not np.isfinite(headings[i]):
            problems.add(
                "without a heading (needed by gt.train_places)", os.path.relpath(p, train_dir)
            )
            utm[i] = np.nan
    city = [_city_folder(p, train_dir) for p in paths]
    finite = np.isfinite(utm).all(1)
    out = [""] * len(paths)
    named = place_names(
        utm[finite],
        headings[finite],
        [c for c, f in zip(city, finite) if f],
        places["train_places"],
        places["place_m"],
        places["place_headings"],
    )
    for i, name in zip(np.nonzero(finite)[0], named):
        out[i] = name
    return out


def add_extra_images(
    train, folders, strict: bool = False, check: str = "header", progress: bool = False
):
    """Join the images of extra folders (e.g. GAN day-to-night translations) to the training places named
    by their ``note`` field; images of unknown places are skipped with a warning. Returns (TrainSet, info)."""
    if not folders:
        return train, {}
    paths = list(train.paths)
    utm = [train.utm]
    notes = list(train.place_names[train.place_of_image])
    known = set(train.place_names.tolist())
    added, unknown = 0, 0
    for folder in folders:
        problems = Problems(folder)
        extra = list_images(folder)
        xy, names = _coordinates(extra, problems, folder)
        keep = check_images(extra, check, problems, folder, progress, only=np.isfinite(xy).all(1))
        problems.report(strict)
        for p, e, n, k in zip(extra, xy, names, keep):
            if not k:
                continue
            if n.note not in known:
                unknown += 1
                continue
            paths.append(p)
            utm.append(e[None])
            notes.append(n.note)
            added += 1
    if unknown:
        warn(
            f"data.extra_train: {unknown} images name places that are not in the training set; skipped"
        )
    merged = train_set_from_places(
        paths, np.concatenate(utm), notes, 1, where="training set + extra images"
    )
    return merged, dict(extra_images=added, extra_images_unknown_place=unknown)
