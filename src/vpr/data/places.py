"""Training places from positions and headings (``gt.train_places``), for image folders whose names carry no
place label but a UTM position and a heading (street-view captures, the Cambridge set).

A place is the images that show one scene: taken close together AND facing the same way (a capture point's
north view and its south view share nothing). Both rules split images by heading class (360 / ``headings``
degrees each, CosPlace's alpha) and group positions:

* ``cells``: square UTM cells of ``place_m`` metres (CosPlace's M), as CosPlace's classes;
* ``clusters``: capture positions grouped greedily around seeds: the position with most neighbours within
  ``place_m`` metres first, with all its unassigned neighbours, and so on. Unlike cells, a group never splits
  two positions a metre apart across a cell border.

``note`` (the default, GSV-XS) reads the place from the name's note field (``placeID_City``) in
vpr.data.layouts.
"""

from __future__ import annotations

import numpy as np

RULES = ("note", "cells", "clusters")


def heading_classes(headings: np.ndarray, classes: int) -> np.ndarray:
    """Class of each heading in degrees: [0, 360/classes) -> 0, and so on (a missing heading is -1)."""
    width = 360.0 / classes
    out = np.floor(np.mod(headings, 360.0) / width).astype(np.int64)
    return np.where(np.isfinite(headings), out, -1)


def position_groups(utm: np.ndarray, rule: str, place_m: float) -> np.ndarray:
    """Group number of each image's position under ``rule`` (cells | clusters)."""
    if rule == "cells":
        cells = np.floor(utm / place_m).astype(np.int64)
        return np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1)
    return _clusters(utm, place_m)


def _clusters(utm: np.ndarray, radius_m: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    positions, of_image = np.unique(
        np.round(utm, 2), axis=0, return_inverse=True
    )  # the capture positions
    tree = cKDTree(positions)
    neighbours = tree.query_ball_point(positions, r=radius_m)
    order = sorted(
        range(len(positions)), key=lambda i: (-len(neighbours[i]), i)
    )  # densest first, then by index
    group = np.full(len(positions), -1, dtype=np.int64)
    count = 0
    for seed in order:
        if group[seed] >= 0:
            continue
        members = [j for j in neighbours[seed] if group[j] < 0]
        group[members] = count
        count += 1
    return group[of_image.reshape(-1)]


def place_names(
    utm: np.ndarray,
    headings: np.ndarray,
    city: list[str],
    rule: str,
    place_m: float,
    headings_per_circle: int,
) -> list[str]:
    """``<group>h<heading class>_<city>`` per image: images of one place share a name (placeID_City, as the
    note rule's names); images without a heading get an empty name (not placed)."""
    city = np.asarray(city)
    groups = np.zeros(len(utm), dtype=np.int64)
    for town in np.unique(
        city
    ):  # positions of two cities never share a group (UTM zones repeat numbers)
        groups[city == town] = position_groups(utm[city == town], rule, place_m)
    classes = heading_classes(headings, headings_per_circle)
    return [f"{g}h{c}_{town}" if c >= 0 else "" for g, c, town in zip(groups, classes, city)]
