"""Folder layouts that build_gt indexes, and the checks it runs on them.

Evaluation sets: ``<set>/{database,queries}/`` with ``@``-named images — the course (``sf_xs/val``,
``sf_xs/test``, ``tokyo_xs/test``) and the VG benchmark (``<name>/images/{train,val,test}``). A query
folder whose names carry no coordinates at all is a query list (``--no_labels`` style): descriptors and
predictions work, recall is skipped with a warning.

Training sets: ``@``-named ``<city>/`` folders with note ``placeID_City`` (GSV-XS), or the original
GSV-Cities layout ``Dataframes/<City>.csv`` (place_id, year, month, northdeg, city_id, lat, lon, panoid)
+ ``Images/<City>/<city>_<placeid:7>_<year>_<month>_<northdeg:3>_<lat>_<lon>_<panoid>.jpg``, indexed in
place, UTM from lat/lon.

Images whose name lacks coordinates or that do not decode are reported by name (first few + count) and
skipped with a warning, or fail the stage with ``gt.strict``. Known set sizes are checked as warnings.
"""
from __future__ import annotations

import glob
import os
import warnings

import numpy as np
from PIL import Image, ImageStat, UnidentifiedImageError
from tqdm import tqdm

from vpr.data.filenames import parse_name
from vpr.data.groundtruth import EvalSet, Positives, list_images, positives_within, train_set_from_places
from vpr.errors import ConfigError, DataError, DataWarning
from vpr.registry import require

# Images per set in the course's archives (database, queries): a mismatch hints at a broken download.
KNOWN_SIZES = {"sf_xs/val": (8015, 7993), "sf_xs/test": (27191, 1000), "tokyo_xs/test": (12771, 315)}
IMAGE_CHECKS = ("none", "header", "decode")
NIGHT_RULES = ("note", "list", "brightness")
NIGHT_KEYS = ("name", "rule", "max_brightness", "list")
NIGHT_LISTS_DIR = "data/lists"
DEFAULT_MAX_BRIGHTNESS = 80.0    # mean grey level (0-255) below which a query counts as night
GSV_COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
SHOW = 5                         # names listed in a report; the rest are counted


def _quiet(progress: bool) -> dict:
    return {} if progress else {"disable": True}   # progress on: tqdm decides (TQDM_DISABLE=1 silences it)


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=2)


class Problems:
    """Bad files of one folder, grouped by reason; reported in one line."""

    def __init__(self, where: str):
        self.where = where
        self.by_reason: dict[str, list[str]] = {}

    def add(self, reason: str, name: str) -> None:
        self.by_reason.setdefault(reason, []).append(name)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_reason.values())

    def message(self) -> str:
        parts = []
        for reason, names in self.by_reason.items():
            more = f", ... (+{len(names) - SHOW} more)" if len(names) > SHOW else ""
            parts.append(f"{len(names)} {reason}: {', '.join(names[:SHOW])}{more}")
        return f"{self.where}: {len(self)} images skipped: " + "; ".join(parts)

    def report(self, strict: bool) -> None:
        if not self:
            return
        if strict:
            raise DataError(self.message().replace("images skipped", "bad images") +
                            "; fix or remove them, or set gt.strict: false to skip them")
        warn(self.message() + "; set gt.strict: true to fail instead")


# ------------------------------------------------------------------------------------- image checks
def image_problem(path: str, check: str = "header") -> str | None:
    """Why ``path`` is not a usable image, or None. ``header``: format, size and (JPEG) end marker / (PNG)
    chunk CRCs — catches truncated files at ~0.05 ms per 512 px JPEG; ``decode``: a full decode (~1 ms)."""
    if check == "none":
        return None
    try:
        with open(path, "rb") as fh, Image.open(fh) as img:   # one open: PIL reads the header, we read the tail
            if img.width < 1 or img.height < 1:
                return "has no pixels"
            if check == "decode":
                img.load()
            elif img.format == "PNG":
                img.verify()
            elif img.format == "JPEG":
                fh.seek(-min(1024, os.fstat(fh.fileno()).st_size), os.SEEK_END)
                if b"\xff\xd9" not in fh.read():
                    return "does not decode (no JPEG end marker: truncated)"
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        return f"does not decode ({exc.__class__.__name__})"
    return None


def check_images(paths, check: str, problems: Problems, base: str, progress: bool = False,
                 only=None) -> np.ndarray:
    """Boolean mask of the images that pass ``check`` (those outside the ``only`` mask are not looked at);
    the others are added to ``problems``."""
    ok = np.ones(len(paths), dtype=bool) if only is None else np.asarray(only, dtype=bool).copy()
    if check == "none":
        return ok
    for i in tqdm(np.nonzero(ok)[0], desc=f"checking {base}", unit="img", **_quiet(progress), leave=False):
        why = image_problem(paths[i], check)
        if why:
            ok[i] = False
            problems.add(why.split(" (")[0], os.path.relpath(paths[i], base))
    return ok


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
                problems.add("without coordinates in the name", os.path.relpath(p, base))
            continue
        utm[i] = n.utm_east, n.utm_north
        names.append(n)
    return utm, names


# ------------------------------------------------------------------------------------ evaluation sets
def set_candidates(root: str, depth: int = 4) -> list[str]:
    """Folders under ``root`` holding both database/ and queries/ (to suggest a fix)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        if dirpath[len(root):].count(os.sep) >= depth:
            dirnames[:] = []
        if {"database", "queries"} <= set(dirnames):
            found.append(dirpath)
    return sorted(found)


def _require_set_dir(set_dir: str) -> None:
    if os.path.isdir(os.path.join(set_dir, "database")) and os.path.isdir(os.path.join(set_dir, "queries")):
        return
    dataset_root = os.path.join(*set_dir.split(os.sep)[:3]) if set_dir.startswith("data" + os.sep) else set_dir
    hint = set_candidates(dataset_root) if os.path.isdir(dataset_root) else []
    hint_text = f"; folders that have both: {', '.join(hint[:SHOW])}" if hint else \
        "; run the fetch stage or fix the folder in params.yaml (data:)"
    raise DataError(f"{set_dir}: expected database/ and queries/ folders here{hint_text}")


def check_known_size(known_as: str | None, num_database: int, num_queries: int, where: str) -> None:
    expected = KNOWN_SIZES.get(known_as or "")
    if expected and expected != (num_database, num_queries):
        dataset = known_as.split("/")[0]
        warn(f"{where}: {num_database:,} database / {num_queries:,} query images, expected {expected[0]:,} / "
             f"{expected[1]:,} for {known_as}; an incomplete download? delete data/raw/{dataset} and re-run "
             f"fetch@{dataset}")


def build_eval_index(set_dir: str, radius_m: float = 25.0, strict: bool = False, check: str = "header",
                     night: dict | None = None, known_as: str | None = None, progress: bool = False):
    """Ground truth of ``<set_dir>/{database,queries}``; returns (EvalSet, extra info for info.json)."""
    set_dir = os.fspath(set_dir)
    _require_set_dir(set_dir)
    db = list_images(os.path.join(set_dir, "database"))
    qs = list_images(os.path.join(set_dir, "queries"))
    check_known_size(known_as, len(db), len(qs), set_dir)
    problems = Problems(set_dir)
    db_utm, _ = _coordinates(db, problems, set_dir)
    q_utm, q_names = _coordinates(qs, None, set_dir)
    labelled = any(n is not None for n in q_names)
    if labelled:
        for p, n in zip(qs, q_names):
            if n is None:
                problems.add("without coordinates in the name", os.path.relpath(p, set_dir))
    else:
        warn(f"{set_dir}/queries: none of the {len(qs)} query names carries coordinates: recall is skipped for "
             f"this set; descriptors and predictions are still computed")
    keep_db = check_images(db, check, problems, set_dir, progress, only=np.isfinite(db_utm).all(1))
    keep_q = check_images(qs, check, problems, set_dir, progress,
                          only=np.isfinite(q_utm).all(1) if labelled else None)
    problems.report(strict)
    if not keep_db.any():
        raise DataError(f"{set_dir}/database: no usable image (names need '@east@north@...' coordinates)")
    if not keep_q.any():
        raise DataError(f"{set_dir}/queries: no usable image")
    db, db_utm = [p for p, k in zip(db, keep_db) if k], db_utm[keep_db]
    qs, q_utm = [p for p, k in zip(qs, keep_q) if k], q_utm[keep_q]
    q_names = [n for n, k in zip(q_names, keep_q) if k]
    positives = positives_within(db_utm, q_utm, radius_m) if labelled else Positives.from_lists([[]] * len(qs))
    night_mask, night_info = night_subset(qs, q_names, os.path.join(set_dir, "queries"), night)
    info = dict(skipped_images=len(problems), **night_info)
    return EvalSet(np.array(db), np.array(qs), db_utm, q_utm, positives, night_mask), info


# ---------------------------------------------------------------------------------------------- night
def check_night_spec(key: str, spec) -> dict:
    """Validate ``data.night.<set>``; defaults filled in."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{key}: expected a mapping like {{name: tokyo_night, rule: brightness, max_brightness: 80}}")
    for k in spec:
        if k not in NIGHT_KEYS:
            raise ConfigError(f"{key}.{k}: unknown key; allowed: {', '.join(NIGHT_KEYS)}")
    out = {**dict(name=None, rule="note", max_brightness=DEFAULT_MAX_BRIGHTNESS, list=None), **spec}
    require(out["rule"] in NIGHT_RULES, f"{key}.rule", f"'{out['rule']}' is not one of: {', '.join(NIGHT_RULES)}")
    require(out["name"] is None or (isinstance(out["name"], str) and out["name"].replace("_", "").isalnum()),
            f"{key}.name", f"must be letters, digits and '_' (the recall table row), got {out['name']!r}")
    b = out["max_brightness"]
    require(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < 255, f"{key}.max_brightness",
            f"must be a mean grey level between 0 and 255, got {b!r}")
    lst = out["list"]
    require(lst is None or (isinstance(lst, str) and lst.startswith(NIGHT_LISTS_DIR + "/") and ".." not in lst),
            f"{key}.list", f"must be a file under {NIGHT_LISTS_DIR}/ (so DVC tracks it), got {lst!r}")
    require(out["rule"] != "list" or lst is not None, f"{key}.list",
            f"rule 'list' needs a list file, e.g. {NIGHT_LISTS_DIR}/tokyo_night.txt (one query name per line)")
    return out


def mean_brightness(path: str) -> float:
    """Mean grey level (0-255); JPEGs are decoded at 1/8 scale, which leaves the mean almost unchanged."""
    with Image.open(path) as img:
        img.draft("L", (max(img.width // 8, 1), max(img.height // 8, 1)))
        return float(ImageStat.Stat(img.convert("L")).mean[0])


def read_name_list(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError(f"{path}: night list not found; create it (one query file name per line) or fix data.night")
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
        keys = [{os.path.basename(p), os.path.relpath(p, queries_dir), n.pano_id if n else None}
                for p, n in zip(paths, names)]
        masks["list"] = np.array([bool(k & wanted) for k in keys], dtype=bool)
        matched = set().union(*(k & wanted for k in keys)) if keys else set()
        unmatched = sorted(wanted - matched)
        if unmatched:
            warn(f"{spec['list']}: {len(unmatched)} of {len(wanted)} names match no query of {queries_dir} "
                 f"(e.g. {', '.join(unmatched[:SHOW])})")
        counts["list"] = int(masks["list"].sum())
    brightness = np.array([mean_brightness(p) for p in paths])
    masks["brightness"] = brightness < spec["max_brightness"]
    counts["brightness"] = int(masks["brightness"].sum())
    rule = spec["rule"]
    info = dict(night_rule=rule, night_name=spec.get("name"), night_counts=counts,
                night_max_brightness=spec["max_brightness"])
    return masks[rule], info


# ------------------------------------------------------------------------------------- training sets
def build_train_index(train_dir: str, min_images: int = 4, strict: bool = False, check: str = "header",
                      progress: bool = False):
    """Training places of ``train_dir`` (GSV-XS ``@`` city folders or original GSV-Cities);
    returns (TrainSet, extra info)."""
    train_dir = os.fspath(train_dir)
    problems = Problems(train_dir)
    if os.path.isdir(os.path.join(train_dir, "Dataframes")):
        layout = "gsv-cities"
        paths, utm, places = gsv_cities_images(train_dir, problems)
    else:
        layout = "@ names"
        paths = list_images(train_dir)
        utm, names = _coordinates(paths, problems, train_dir)
        places = []
        for i, (p, n) in enumerate(zip(paths, names)):
            if n is not None and "_" not in n.note:   # GSV-XS notes are placeID_City, e.g. 284_Rome
                problems.add("without a 'placeID_City' note", os.path.relpath(p, train_dir))
                utm[i] = np.nan
            places.append(n.note if n is not None else "")
    keep = check_images(paths, check, problems, train_dir, progress, only=np.isfinite(utm).all(1))
    problems.report(strict)
    if not keep.any():
        raise DataError(f"{train_dir}: no usable training image")
    train = train_set_from_places([p for p, k in zip(paths, keep) if k], utm[keep],
                                  [pl for pl, k in zip(places, keep) if k], min_images, where=train_dir)
    return train, dict(layout=layout, skipped_images=len(problems))


def latlon_to_utm(lat, lon) -> np.ndarray:
    """(n, 2) UTM east, north; each point in its own zone (grouped, so arrays convert in one call per zone)."""
    import utm
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    out = np.full((len(lat), 2), np.nan)
    valid = np.isfinite(lat) & np.isfinite(lon) & (lat >= -80) & (lat <= 84) & (np.abs(lon) <= 180)
    zones = np.array([utm.latlon_to_zone_number(a, b) if v else -1 for a, b, v in zip(lat, lon, valid)], dtype=np.int64)
    for zone, south in {(int(z), bool(s)) for z, s, v in zip(zones, lat < 0, valid) if v}:
        m = valid & (zones == zone) & ((lat < 0) == south)
        east, north, _, _ = utm.from_latlon(lat[m], lon[m], force_zone_number=zone,
                                            force_zone_letter="C" if south else "N")
        out[m, 0], out[m, 1] = east, north
    return out


def gsv_cities_name(city: str, place_id: int, year: int, month: int, northdeg: int, lat, lon, panoid: str) -> str:
    """Image file name of one GSV-Cities row (as the dataset's own loader builds it)."""
    return f"{city}_{place_id % 10**5:07d}_{year:04d}_{month:02d}_{northdeg:03d}_{lat}_{lon}_{panoid}.jpg"


def _gsv_key(city: str, filename: str):
    """(place_id, year, month, northdeg, panoid) from a file name; lat/lon are taken from the CSV instead,
    so the float formatting of the name does not matter."""
    stem = filename[len(city) + 1:-len(".jpg")]
    parts = stem.split("_", 6)
    if not filename.startswith(city + "_") or len(parts) != 7:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), parts[6]
    except ValueError:
        return None


def gsv_cities_images(root: str, problems: Problems):
    """Index ``Dataframes/*.csv`` + ``Images/<City>/`` in place: paths, UTM, place names (``placeID_City``)."""
    import pandas as pd
    csvs = sorted(glob.glob(os.path.join(root, "Dataframes", "*.csv")))
    if not csvs:
        raise DataError(f"{root}/Dataframes: no <City>.csv file; expected the GSV-Cities layout "
                        f"(Dataframes/<City>.csv + Images/<City>/)")
    paths, lats, lons, places = [], [], [], []
    for csv in csvs:
        try:
            df = pd.read_csv(csv, dtype={"panoid": str, "city_id": str})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"{csv}: not a readable CSV ({exc.__class__.__name__}); re-download the dataset") from None
        missing = [c for c in GSV_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{csv}: missing column(s) {', '.join(missing)}; a GSV-Cities dataframe has "
                            f"{', '.join(GSV_COLUMNS)}")
        for city, rows in df.groupby("city_id", sort=True):
            folder = os.path.join(root, "Images", city)
            if not os.path.isdir(folder):
                raise DataError(f"{folder}: folder not found but {os.path.basename(csv)} lists {len(rows)} images of "
                                f"{city}; re-download the dataset")
            index = {}
            for f in os.listdir(folder):
                key = _gsv_key(city, f) if f.lower().endswith(".jpg") else None
                if key is not None:
                    index[key] = f
            cols = [rows[c].tolist() for c in GSV_COLUMNS]
            for place_id, year, month, northdeg, _, lat, lon, panoid in zip(*cols):
                key = (int(place_id) % 10**5, int(year), int(month), int(northdeg), str(panoid))
                name = index.get(key)
                if name is None:
                    problems.add(f"listed in {os.path.basename(csv)} but missing from Images/{city}/",
                                 gsv_cities_name(city, int(place_id), int(year), int(month), int(northdeg), lat, lon,
                                                 panoid))
                    continue
                paths.append(os.path.join(folder, name))
                lats.append(lat)
                lons.append(lon)
                places.append(f"{int(place_id)}_{city}")
    utm = latlon_to_utm(lats, lons) if paths else np.zeros((0, 2))
    bad = ~np.isfinite(utm).all(1)
    for i in np.nonzero(bad)[0]:
        problems.add("with invalid lat/lon", os.path.relpath(paths[i], root))
    return paths, utm, places


def add_extra_images(train, folders, strict: bool = False, check: str = "header", progress: bool = False):
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
        warn(f"data.extra_train: {unknown} images name places that are not in the training set; skipped")
    merged = train_set_from_places(paths, np.concatenate(utm), notes, 1, where="training set + extra images")
    return merged, dict(extra_images=added, extra_images_unknown_place=unknown)
