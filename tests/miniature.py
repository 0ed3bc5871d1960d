"""Miniature copies of the real datasets' folder layouts, made from the generated city (tests only)."""
import csv
import os
import shutil
from pathlib import Path

from vpr.data.filenames import parse_name


def course_tree(city: Path, root: Path) -> Path:
    """``gsv_xs/train/<City>/``, ``sf_xs/{val,test}/``, ``tokyo_xs/test/`` as in the course's archives, whose
    evaluation images carry no note (so nothing marks the night queries: a rule has to find them)."""
    shutil.copytree(city / "train", root / "gsv_xs/train")
    for src, dst in (("val", "sf_xs/val"), ("test", "sf_xs/test"), ("test", "tokyo_xs/test")):
        for path in (city / src).rglob("*.jpg"):
            tokens = path.name.split("@")
            tokens[14] = ""                                   # the note field
            dest = root / dst / path.parent.name / "@".join(tokens)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    return root


def vg_tree(city: Path, root: Path, name: str = "pitts") -> Path:
    """The VG benchmark layout ``<name>/images/{val,test}/{database,queries}``."""
    for split in ("val", "test"):
        shutil.copytree(city / split, root / name / "images" / split)
    return root / name


def gsv_cities_tree(city: Path, root: Path) -> Path:
    """The original GSV-Cities layout: ``Dataframes/<City>.csv`` + ``Images/<City>/<city>_<placeid:7>_<year>_
    <month>_<northdeg:3>_<lat>_<lon>_<panoid>.jpg``, written from the generated training city.
    Every third panoid gets an underscore, as real ones do."""
    rows = {}
    for i, path in enumerate(sorted((city / "train").rglob("*.jpg"))):
        n = parse_name(path)
        place_id, town = n.note.split("_", 1)
        panoid = n.pano_id[:5] + "_" + n.pano_id[6:] if i % 3 == 0 else n.pano_id
        year, month = int(n.timestamp[:4]), int(n.timestamp[4:6])
        lat, lon = float(n.lat), float(n.lon)
        name = f"{town}_{int(place_id):07d}_{year:04d}_{month:02d}_{int(n.heading):03d}_{lat}_{lon}_{panoid}.jpg"
        dest = root / "Images" / town / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        rows.setdefault(town, []).append(dict(place_id=int(place_id), year=year, month=month,
                                              northdeg=int(n.heading), city_id=town, lat=lat, lon=lon, panoid=panoid))
    os.makedirs(root / "Dataframes", exist_ok=True)
    for town, town_rows in rows.items():
        with open(root / "Dataframes" / f"{town}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(town_rows[0]))
            w.writeheader()
            w.writerows(town_rows)
    return root
