"""Photos in, positions out: the photos' descriptors, their top-k database matches and the estimated position."""

from __future__ import annotations

import os

import numpy as np

from vpr.data.filenames import IMAGE_EXTENSIONS
from vpr.data.groundtruth import list_images
from vpr.data.image_checks import Problems, image_problem, warn
from vpr.errors import DataError
from vpr.localize.database import Database, database_descriptors, to_latlon


def collect_photos(items) -> list[str]:
    """Files as given, folders expanded (recursively, sorted), each photo fully decoded before any work. Bad
    ones (missing, not an image, truncated) are skipped with one DataWarning naming them; DataError when
    none is left."""
    problems, photos = Problems("photos"), []
    for item in items:
        if os.path.isdir(item):
            try:
                photos += list_images(item)
            except DataError:
                problems.add("folders without photos", str(item))
        elif os.path.isfile(item):
            photos.append(item)
        else:
            problems.add("no such photo or folder", str(item))
    good = []
    for p in photos:
        why = image_problem(p, "decode")
        if why:
            problems.add(why.split(" (")[0], p)
        else:
            good.append(p)
    if not good:
        raise DataError(
            f"{problems.message().replace('images skipped', 'bad, none usable')}; pass photos "
            f"({', '.join(IMAGE_EXTENSIONS)}) or folders of photos"
        )
    if problems:
        warn(problems.message())
    return good


def photo_descriptors(
    model,
    photos,
    prep,
    device: str,
    dtype: str = "float32",
    method: dict | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, list]:
    """Descriptors of the photos, prepared exactly as the evaluation's queries were (``prep`` and the query
    ``method``, the same code as the extract stage; five rows per photo for nearest_crop / maj_voting) and
    rounded to the database's storage ``dtype`` (as evaluate compares them), and each photo's (width, height)
    after EXIF rotation."""
    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import oriented_size
    from vpr.eval.query_methods import query_prep

    name = (method or {}).get("query_method", "single")
    sizes = [oriented_size(p)[::-1] for p in photos]
    d = compute_descriptors(
        model,
        photos,
        query_prep(prep, name),
        batch_size,
        0,
        device,
        desc="photos",
        crops="mean" if name == "five_crops" else "all",
    )
    if not len(photos):
        d = np.zeros((0, model.descriptor_dim), np.float32)
    return d.astype(dtype).astype(np.float32), sizes


def estimate_position(
    utm_xy: np.ndarray, similarity: np.ndarray, agree_m: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated (east, north) from the ranked matches: similarity-weighted mean of the matches within
    ``agree_m`` of the top-1 (the top-1 alone when no other agrees). Returns (position, used mask)."""
    utm_xy = np.asarray(utm_xy, dtype=np.float64)
    used = np.linalg.norm(utm_xy - utm_xy[0], axis=1) <= agree_m
    weights = np.clip(np.asarray(similarity, dtype=np.float64)[used], 1e-6, None)
    return (utm_xy[used] * weights[:, None]).sum(0) / weights.sum(), used


def localize(
    photos,
    model,
    model_path: str,
    db: Database,
    top_k: int = 5,
    agree_m: float = 25.0,
    asked_prep=None,
    device: str = "cpu",
    stored_only: bool = False,
    log=print,
) -> list[dict]:
    """One result dict per photo (see the vpr.localize docstring). ``asked_prep``: an ImagePrep to use instead of
    the stored descriptors' (then the database is extracted again). ``model.calibration`` (stored with the
    checkpoint, vpr.eval.confidence): each photo's confidence and whether it is kept (``in_database``); None
    (a checkpoint from before calibrations): both None, said once (``log``)."""
    from vpr.eval.query_methods import crops_per_query
    from vpr.eval.retrieval import retrieve

    calibration = getattr(model, "calibration", None)
    db_desc, prep, dtype, method = database_descriptors(
        db, model, model_path, asked_prep, device, stored_only, log=log
    )
    # Photos prepared as the database was, as the evaluation does.
    q_desc, sizes = photo_descriptors(model, photos, prep, device, dtype, method)
    k = min(top_k, len(db.paths))
    top = retrieve(
        db_desc,
        q_desc,
        min(max(k, calibration.depth if calibration else 0), len(db.paths)),
        **method,
    )
    crops = crops_per_query(method.get("query_method", "single"))
    results = []
    for i, photo in enumerate(photos):
        sims = (db_desc[top[i]] @ q_desc[i * crops : (i + 1) * crops].T).max(
            1
        )  # the best of the photo's crops
        confidence = _confidence(calibration, db, top[i], sims)
        result = dict(
            photo=photo,
            width=sizes[i][0],
            height=sizes[i][1],
            **_matches(db, top[i][:k], sims[:k], agree_m),
        )
        result.update(
            confidence=None if confidence is None else round(confidence, 4),
            in_database=None if confidence is None else bool(confidence >= calibration.threshold),
        )
        results.append(result)
    if calibration is None:
        log(
            f"calibration: none stored in {model_path} (saved before confidences existed): every photo gets a "
            f"position, none is flagged as not in this database; retrain the model to get confidences"
        )
    return results


def _confidence(calibration, db: Database, idx: np.ndarray, sims: np.ndarray) -> float | None:
    """The calibrated confidence that the top-1 of these ranked matches is right (None: no calibration)."""
    if calibration is None:
        return None
    from vpr.eval.confidence import match_features

    idx = idx[: calibration.depth]
    same_zone = np.array(
        [db.zones[j] == db.zones[idx[0]] for j in idx]
    )  # another zone: not comparable, far
    positions = np.where(same_zone[:, None], db.utm[idx], np.inf)
    return float(
        calibration.confidence(
            match_features(sims[None, : len(idx)], positions[None], calibration.radius_m)
        )[0]
    )


def _matches(db: Database, idx: np.ndarray, sims: np.ndarray, agree_m: float) -> dict:
    """The ranked matches with their coordinates, and the position estimate from them."""
    # Only matches in the top-1's UTM zone can be averaged in metres.
    same_zone = np.array([db.zones[j] == db.zones[idx[0]] for j in idx])
    pos, used = estimate_position(np.where(same_zone[:, None], db.utm[idx], np.inf), sims, agree_m)
    zone, band = db.zones[idx[0]]
    if used.sum() == 1:  # the top-1 itself: its own lat/lon, as its name gives them
        lat, lon = db.latlon[idx[0]]
    else:
        lat, lon = to_latlon(pos[0], pos[1], zone, band) if zone else (float("nan"), float("nan"))
    dist = np.linalg.norm(db.utm[idx] - db.utm[idx[0]], axis=1)
    matches = [
        dict(
            rank=r + 1,
            image=str(db.paths[j]),
            similarity=round(float(sims[r]), 4),
            lat=_num(db.latlon[j, 0], 6),
            lon=_num(db.latlon[j, 1], 6),
            utm_east=round(float(db.utm[j, 0]), 2),
            utm_north=round(float(db.utm[j, 1]), 2),
            utm_zone=f"{db.zones[j][0]}{db.zones[j][1]}",
            distance_to_top1_m=round(float(dist[r]), 1),
            agrees_with_top1=bool(used[r]),
        )
        for r, j in enumerate(idx)
    ]
    ranks = [int(r) + 1 for r in np.nonzero(used)[0]]
    estimate = dict(
        lat=_num(lat, 6),
        lon=_num(lon, 6),
        utm_east=round(float(pos[0]), 2),
        utm_north=round(float(pos[1]), 2),
        utm_zone=f"{zone}{band}",
        method="top-1" if len(ranks) == 1 else "similarity-weighted mean",
        from_ranks=ranks,
    )
    return dict(matches=matches, estimate=estimate)


def _num(x: float, digits: int):
    return None if not np.isfinite(x) else round(float(x), digits)
