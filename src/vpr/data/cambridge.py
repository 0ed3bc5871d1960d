"""The Cambridge street-view set: real Google Street View photos of central Cambridge (UK), from the public
repository GreenSlime96/StreetView-Localisation at a pinned commit, converted to the course's ``@``-named folders
with a fixed split.

The repository holds ``data/images/{i}_{v}.jpg`` (capture point ``i`` = 0..1023, view ``v``: 0 north, 1 east,
2 south, 3 west, 4 the sky, skipped) and ``data/coordinates`` (line ``i``: ``lat,lon`` of point ``i``, WGS84).

The split, fixed so that results compare with independent computations (``split_points``):

* UTM east/north of every capture point (zone 31U);
* test area: the points with east >= the median east of all points; test queries: test-area points ``i`` with
  ``i % 5 == 0`` (their 4 views), test database: the other test-area points' 4 views;
* training and validation come from the points with east < median - 50 m. Validation: those with north >= the
  80th percentile of their north, split into database / queries the same way; training: the others farther
  than 50 m from every validation point (the points in the gaps are left out);
* positives within 25 m (build_gt, ``gt.radius_m``).

Names: ``@east@north@31@U@lat@lon@<point>@@<heading>@@@@@<view>@.jpg`` (pano_id = the capture point, heading
from the view, the view N/E/S/W in the note field). The training images' places are formed by build_gt from
positions and headings (``gt.train_places``), not from the note.

Every file of a download is checked against its sha256 in the project's copy of the list of the original files
(``manifests/cambridge_sv.sha256``): a GitHub archive is not byte-stable, its files are. A local copy (``source:
path``, e.g. one re-encoded at 320 x 320) has only its ``coordinates`` checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from vpr.data.filenames import FETCH_MARKER, format_name
from vpr.errors import DataError
from vpr.io import atomic_dir
from vpr.progress import quiet

REPOSITORY = "GreenSlime96/StreetView-Localisation"
COMMIT = "9a69cd417a68f5d431e7dd1c574b019570d83590"
URL = f"https://github.com/{REPOSITORY}/archive/{COMMIT}.zip"
MANIFEST = os.path.join(os.path.dirname(__file__), "manifests", "cambridge_sv.sha256")
COORDINATES = "data/coordinates"
IMAGES = "data/images"
VIEWS = {
    0: ("N", 0),
    1: ("E", 90),
    2: ("S", 180),
    3: ("W", 270),
}  # view -> (note, heading in degrees)
SKY_VIEW = 4
UTM_ZONE, UTM_BAND = 31, "U"
CITY = "Cambridge"
GAP_M = 50.0  # between the test area and training/validation, and between validation and training
VAL_NORTH_PERCENTILE = 80
QUERY_EVERY = 5  # point i is a query point when i % 5 == 0


@dataclass(frozen=True)
class Split:
    """Capture-point indices of each role (ascending)."""

    train: np.ndarray
    val_database: np.ndarray
    val_queries: np.ndarray
    test_database: np.ndarray
    test_queries: np.ndarray

    def roles(self) -> dict[str, np.ndarray]:
        """Folder under the dataset -> its points."""
        return {
            f"train/{CITY}": self.train,
            "val/database": self.val_database,
            "val/queries": self.val_queries,
            "test/database": self.test_database,
            "test/queries": self.test_queries,
        }


def split_points(utm: np.ndarray) -> Split:
    """The fixed split of the capture points at ``utm`` ((n, 2) east, north; index = point number)."""
    from scipy.spatial import cKDTree

    east, north = utm[:, 0], utm[:, 1]
    index = np.arange(len(utm))
    median = np.median(east)
    test = index[east >= median]
    area = index[east < median - GAP_M]
    val = area[north[area] >= np.percentile(north[area], VAL_NORTH_PERCENTILE)]
    rest = area[north[area] < np.percentile(north[area], VAL_NORTH_PERCENTILE)]
    distance, _ = cKDTree(utm[val]).query(utm[rest])
    train = rest[distance >= GAP_M]
    query = lambda points: points[points % QUERY_EVERY == 0]  # noqa: E731
    database = lambda points: points[points % QUERY_EVERY != 0]  # noqa: E731
    return Split(train, database(val), query(val), database(test), query(test))


def read_points(coordinates_file: str) -> tuple[np.ndarray, np.ndarray]:
    """(lat/lon, UTM east/north in zone 31U) of every capture point, line i = point i."""
    import utm as utm_lib

    try:
        latlon = np.loadtxt(coordinates_file, delimiter=",", ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{coordinates_file}: cannot read the capture points ({exc}); expected one 'lat,lon' "
            f"line per point: re-download the dataset"
        ) from None
    if latlon.shape[1] != 2 or not np.isfinite(latlon).all():
        raise DataError(f"{coordinates_file}: expected one 'lat,lon' line per capture point")
    east, north, _, _ = utm_lib.from_latlon(latlon[:, 0], latlon[:, 1], force_zone_number=UTM_ZONE)
    return latlon, np.c_[east, north]


def read_manifest(path: str) -> dict[str, str]:
    """``relative path -> sha256`` of the original files (sha256sum's format)."""
    with open(path) as fh:
        return {
            name.strip(): digest
            for digest, name in (line.split(None, 1) for line in fh if line.strip())
        }


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(root: str, manifest: dict[str, str], names, progress: bool = False) -> None:
    """DataError naming the files of ``names`` (relative to ``root``) that are missing or differ from the
    manifest's sha256."""
    from tqdm import tqdm

    missing, wrong = [], []
    for name in tqdm(
        sorted(names), desc="sha256 of each file", unit="file", leave=False, **quiet(progress)
    ):
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            missing.append(name)
        elif _sha256(path) != manifest[name]:
            wrong.append(name)
    if missing or wrong:
        parts = [
            f"{len(v)} {what} (e.g. {v[0]})"
            for v, what in ((missing, "missing"), (wrong, "differ from the original's sha256"))
            if v
        ]
        raise DataError(
            f"{root}: {', '.join(parts)}; the download is incomplete or not commit {COMMIT[:12]}: "
            f"delete it and re-run fetch"
        )


def image_name(point: int, view: int, latlon, utm) -> str:
    note, heading = VIEWS[view]
    return format_name(
        utm[0],
        utm[1],
        UTM_ZONE,
        UTM_BAND,
        latlon[0],
        latlon[1],
        pano_id=f"{point:04d}",
        heading=heading,
        note=note,
    )


def convert(
    source: str,
    target: str,
    verify_all: bool,
    move: bool = False,
    points=None,
    marker: dict | None = None,
    progress: bool = False,
    manifest: str | None = None,
) -> dict:
    """Write ``target`` (train/Cambridge, val/{database,queries}, test/{database,queries}) from the repository
    layout at ``source``, atomically. ``verify_all``: check every file of the manifest (a download); else only the
    coordinates (a local copy, maybe re-encoded). ``move``: move the images (a download's extracted folder) instead
    of copying them. ``points``: only these capture points (a subset for tests; the split is the full set's).
    ``manifest``: the sha256 list (default: the project's copy of the original files' list).
    Returns the summary also stored in ``target/.fetch.json``."""
    manifest = read_manifest(manifest or MANIFEST)
    _require_layout(source)
    images = os.path.join(source, IMAGES)
    present = set(os.listdir(images))
    if verify_all:
        verify(source, manifest, manifest, progress)
    else:
        verify(source, manifest, [COORDINATES])
    latlon, utm = read_points(os.path.join(source, COORDINATES))
    split = split_points(utm)
    keep = None if points is None else set(int(p) for p in points)
    counts = {}
    transfer = os.replace if move else shutil.copyfile
    with atomic_dir(target) as tmp:
        for folder, role_points in split.roles().items():
            os.makedirs(os.path.join(tmp, folder))
            chosen = [int(p) for p in role_points if keep is None or int(p) in keep]
            for p in chosen:
                for v in VIEWS:
                    src = os.path.join(images, f"{p}_{v}.jpg")
                    if f"{p}_{v}.jpg" not in present:
                        raise DataError(
                            f"{src}: missing; the copy at {source} is incomplete (re-download it)"
                        )
                    transfer(src, os.path.join(tmp, folder, image_name(p, v, latlon[p], utm[p])))
            counts[folder] = dict(points=len(chosen), images=len(chosen) * len(VIEWS))
        summary = dict(
            marker or {},
            converted="cambridge_sv",
            repository=REPOSITORY,
            commit=COMMIT,
            verified="every file (sha256)" if verify_all else "coordinates only (a local copy)",
            capture_points=len(utm),
            sky_views_skipped=sum(f.endswith(f"_{SKY_VIEW}.jpg") for f in present),
            files=sum(c["images"] for c in counts.values()),
            sets=counts,
        )
        with open(os.path.join(tmp, FETCH_MARKER), "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


def _require_layout(source: str) -> None:
    if not (
        os.path.isfile(os.path.join(source, COORDINATES))
        and os.path.isdir(os.path.join(source, IMAGES))
    ):
        raise DataError(
            f"{source}: expected {COORDINATES} and {IMAGES}/ (the layout of {REPOSITORY}); point the "
            f"dataset's path at the folder holding data/"
        )


def local_copy(root: str) -> str | None:
    """A local copy of the repository's files, for developers and CI (never on a user's machine, never
    committed): ``$VPR_CAMBRIDGE_SV``, else ``shared/data/cambridge_streetview`` in a folder above ``root``."""
    env = os.environ.get("VPR_CAMBRIDGE_SV")
    parents = [os.path.dirname(os.path.abspath(root))]
    while os.path.dirname(parents[-1]) != parents[-1]:
        parents.append(os.path.dirname(parents[-1]))
    candidates = (
        [env]
        if env
        else [os.path.join(p, "shared", "data", "cambridge_streetview") for p in parents]
    )
    return next((c for c in candidates if os.path.isfile(os.path.join(c, COORDINATES))), None)


def describe(summary: dict) -> str:
    """One line: what was converted."""
    sets = ", ".join(f"{k} {v['images']}" for k, v in summary["sets"].items())
    return (
        f"{summary['files']} images of {summary['capture_points']} capture points ({sets}); "
        f"{summary['sky_views_skipped']} sky views skipped; verified: {summary['verified']}"
    )
