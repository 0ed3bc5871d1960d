"""Parse and format the 14-field ``@`` image names of the VPR datasets.

``@UTM_east@UTM_north@zone@band@lat@lon@pano_id@tile@heading@pitch@roll@height@timestamp@note@.jpg``
Only the basename is split: an ``@`` in a folder name must not shift the fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vpr.errors import DataError

# what every image listing reads (lower-cased suffix): the formats PIL decodes without extra libraries
FETCH_MARKER = (
    ".fetch.json"  # in every fetched folder: what was fetched, from where (vpr.data.sources)
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
FIELDS = (
    "utm_east",
    "utm_north",
    "utm_zone",
    "utm_band",
    "lat",
    "lon",
    "pano_id",
    "tile",
    "heading",
    "pitch",
    "roll",
    "height",
    "timestamp",
    "note",
)
PATTERN = "@UTM_east@UTM_north@zone@band@lat@lon@pano_id@tile@heading@pitch@roll@height@timestamp@note@.jpg"
NO_COORDINATES = "without coordinates in the name"


@dataclass(frozen=True)
class ImageName:
    utm_east: float
    utm_north: float
    utm_zone: str = ""
    utm_band: str = ""
    lat: str = ""
    lon: str = ""
    pano_id: str = ""
    tile: str = ""
    heading: str = ""
    pitch: str = ""
    roll: str = ""
    height: str = ""
    timestamp: str = ""
    note: str = ""


def _coordinates(tokens: list[str]) -> tuple[float, float] | None:
    """UTM east, north of the split name, or None when they are not finite numbers."""
    try:
        east, north = float(tokens[1]), float(tokens[2])
    except (ValueError, IndexError):
        return None
    return (east, north) if np.isfinite(east) and np.isfinite(north) else None


def shown_if_not_utf8(name: str) -> str | None:
    """``name`` with its bytes that are not UTF-8 written ``\\xe9``, or None when it is valid UTF-8.

    Python keeps such bytes (a 'café.jpg' written on a Latin-1 system) as lone surrogates, which no UTF-8 file
    list, ground-truth array or page can hold. Image names are parsed and written out by every later stage, and
    guessing their encoding would name a file that does not exist on disk: the caller refuses the name instead,
    showing it this way, and the user renames it."""
    try:
        name.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    try:
        raw = name.encode("utf-8", "surrogateescape")  # the bytes on disk
    except UnicodeEncodeError:  # a surrogate that stands for no byte: its code
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def name_problem(path: str | os.PathLike) -> str | None:
    """Short reason the name does not parse (grouped in reports: ``with 13 '@' fields instead of 14``,
    ``without coordinates in the name``), or None when it parses."""
    tokens = os.path.basename(os.fspath(path)).split("@")
    if tokens[0] != "" or _coordinates(tokens) is None:
        return NO_COORDINATES
    if len(tokens) != len(FIELDS) + 2:
        return f"with {len(tokens) - 2} '@' fields instead of {len(FIELDS)}"
    return None


def parse_name(path: str | os.PathLike) -> ImageName:
    """Fields of one image name; raises DataError naming the file and what is wrong with its name."""
    base = os.path.basename(os.fspath(path))
    tokens = base.split("@")
    if len(tokens) != len(FIELDS) + 2 or tokens[0] != "":
        raise DataError(
            f"{path}: name has {max(len(tokens) - 2, 0)} '@' fields, expected {len(FIELDS)}: "
            f"{PATTERN} (any image extension); rename the file or remove it from the folder"
        )
    coords = _coordinates(tokens)
    if coords is None:
        raise DataError(
            f"{path}: UTM east/north fields '{tokens[1]}', '{tokens[2]}' are not finite numbers; "
            f"the name must start with '@<east>@<north>@' ({PATTERN})"
        )
    return ImageName(*coords, *tokens[3 : len(FIELDS) + 1])


def format_name(
    utm_east: float,
    utm_north: float,
    utm_zone: int | str = "",
    utm_band: str = "",
    lat: float | str = "",
    lon: float | str = "",
    pano_id: str = "",
    tile: str = "",
    heading: float | str = "",
    pitch: float | str = "",
    roll: str = "",
    height: str = "",
    timestamp: str = "",
    note: str = "",
    ext: str = ".jpg",
) -> str:
    """Name with the usual zero padding (east/north 7+2 digits, lat 3+5, lon 4+5, heading 3)."""
    values = [
        f"{utm_east:010.2f}",
        f"{utm_north:010.2f}",
        f"{int(utm_zone):02d}" if utm_zone != "" else "",
        utm_band,
        f"{float(lat):09.5f}" if lat != "" else "",
        f"{float(lon):010.5f}" if lon != "" else "",
        pano_id,
        tile,
        f"{int(round(float(heading))) % 360:03d}" if heading != "" else "",
        f"{int(round(float(pitch))):03d}" if pitch != "" else "",
        roll,
        height,
        timestamp,
        note,
    ]
    for field, value in zip(FIELDS, values):
        if "@" in str(value) or "/" in str(value):
            raise ValueError(f"field {field}={value!r} may not contain '@' or '/'")
    return "@" + "@".join(values) + "@" + ext


def utm_of(paths) -> np.ndarray:
    """(n, 2) float64 array of UTM east, north parsed from the names."""
    out = np.empty((len(paths), 2), dtype=np.float64)
    for i, p in enumerate(paths):
        name = parse_name(p)
        out[i] = name.utm_east, name.utm_north
    return out
