"""Reader of the original GSV-Cities layout: ``Dataframes/<City>.csv`` (place_id, year, month, northdeg,
city_id, lat, lon, panoid) + ``Images/<City>/<city>_<placeid:7>_<year>_<month>_<northdeg:3>_<lat>_<lon>_<panoid>.jpg``,
indexed in place, UTM from lat/lon."""

from __future__ import annotations

import glob
import os

import numpy as np

from vpr.data.image_checks import Problems
from vpr.errors import DataError

GSV_COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")


def latlon_to_utm(lat, lon) -> np.ndarray:
    """(n, 2) UTM east, north; each point in its own zone (grouped, so arrays convert in one call per zone)."""
    import utm

    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    out = np.full((len(lat), 2), np.nan)
    valid = np.isfinite(lat) & np.isfinite(lon) & (lat >= -80) & (lat <= 84) & (np.abs(lon) <= 180)
    zones = np.array(
        [utm.latlon_to_zone_number(a, b) if v else -1 for a, b, v in zip(lat, lon, valid)],
        dtype=np.int64,
    )
    for zone, south in {(int(z), bool(s)) for z, s, v in zip(zones, lat < 0, valid) if v}:
        m = valid & (zones == zone) & ((lat < 0) == south)
        east, north, _, _ = utm.from_latlon(
            lat[m], lon[m], force_zone_number=zone, force_zone_letter="C" if south else "N"
        )
        out[m, 0], out[m, 1] = east, north
    return out


def gsv_cities_name(
    city: str, place_id: int, year: int, month: int, northdeg: int, lat, lon, panoid: str
) -> str:
    """Image file name of one GSV-Cities row (as the dataset's own loader builds it)."""
    return f"{city}_{place_id % 10**5:07d}_{year:04d}_{month:02d}_{northdeg:03d}_{lat}_{lon}_{panoid}.jpg"


def _gsv_key(city: str, filename: str):
    """(place_id, year, month, northdeg, panoid) from a file name; lat/lon are taken from the CSV instead,
    so the float formatting of the name does not matter."""
    stem = filename[len(city) + 1 : -len(".jpg")]
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
        raise DataError(
            f"{root}/Dataframes: no <City>.csv file; expected the GSV-Cities layout "
            f"(Dataframes/<City>.csv + Images/<City>/)"
        )
    paths, lats, lons, places = [], [], [], []
    for csv in csvs:
        try:
            df = pd.read_csv(csv, dtype={"panoid": str, "city_id": str})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataError(
                f"{csv}: not a readable CSV ({exc.__class__.__name__}); re-download the dataset"
            ) from None
        missing = [c for c in GSV_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(
                f"{csv}: missing column(s) {', '.join(missing)}; a GSV-Cities dataframe has "
                f"{', '.join(GSV_COLUMNS)}"
            )
        for city, rows in df.groupby("city_id", sort=True):
            folder = os.path.join(root, "Images", city)
            if not os.path.isdir(folder):
                raise DataError(
                    f"{folder}: folder not found but {os.path.basename(csv)} lists {len(rows)} images of "
                    f"{city}; re-download the dataset"
                )
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
                    problems.add(
                        f"listed in {os.path.basename(csv)} but missing from Images/{city}/",
                        gsv_cities_name(
                            city,
                            int(place_id),
                            int(year),
                            int(month),
                            int(northdeg),
                            lat,
                            lon,
                            panoid,
                        ),
                    )
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
