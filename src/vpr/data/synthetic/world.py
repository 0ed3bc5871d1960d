"""The embedded synthetic city: a street grid lined with buildings whose look is a function of position.

A city is a Manhattan grid of irregular blocks. Every block face is split into buildings; every
building takes an architectural archetype from a small shared pool (so distant places can look
alike, as in real cities) plus its own colour shift, height and shop sign (so nearby views share
distinctive content). Everything is drawn from one seeded generator: same seed, same city.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import utm

# Real anchors for the fictional cities, so UTM zones, bands and lat/lon are genuine.
ANCHORS = {
    "Avalon": (41.8900, 12.4900),  # near Rome, zone 33T
    "Brightwater": (48.8600, 2.3400),  # near Paris, zone 31U
    "Cedarfield": (40.4200, -3.7000),  # near Madrid, zone 30T
    "Dunmore": (51.5100, -0.1200),  # near London, zone 30U
    "Elmstead": (52.5200, 13.4000),  # near Berlin, zone 33U
    "Foxhollow": (45.4600, 9.1900),  # near Milan, zone 32T
    "Greyhaven": (37.7800, -122.4200),  # near San Francisco, zone 10S (test city)
    "Harborview": (35.6800, 139.7000),  # near Tokyo, zone 54S (validation city)
    "Juniper": (
        48.2100,
        16.3700,
    ),  # near Vienna, zone 33U (database/queries training city for mining)
}
TRAIN_CITIES = ("Avalon", "Brightwater", "Cedarfield", "Dunmore", "Elmstead", "Foxhollow")
VAL_CITY, TEST_CITY, MINING_CITY = "Harborview", "Greyhaven", "Juniper"

# Archetype texture kinds.
PLAIN, BRICK, BANDS, PANELS, PILASTERS = range(5)


@dataclass
class City:
    name: str
    zone: int
    band: str
    origin_east: float
    origin_north: float
    xs: np.ndarray  # x of the north-south street centre lines (m)
    ys: np.ndarray  # y of the east-west street centre lines (m)
    street_width: float
    # Facade segments (one per building): endpoints, outward normal, building id.
    seg_p0: np.ndarray  # (S, 2)
    seg_p1: np.ndarray  # (S, 2)
    seg_normal: np.ndarray  # (S, 2)
    # Per-building attributes, indexed by building id.
    height: np.ndarray  # (B,)
    base_color: np.ndarray  # (B, 3)
    trim_color: np.ndarray  # (B, 3)
    window_color: np.ndarray  # (B, 3)
    sign_color: np.ndarray  # (B, 3) ; sign_width 0 = no sign
    sign_width: np.ndarray  # (B,)
    sign_seed: np.ndarray  # (B,) int
    texture: np.ndarray  # (B,) int archetype texture kind
    floor_height: np.ndarray  # (B,)
    window_spacing: np.ndarray  # (B,)
    window_w: np.ndarray  # (B,) fraction of spacing
    window_h: np.ndarray  # (B,) fraction of floor height
    shop_floor: np.ndarray  # (B,) bool: glazed ground floor
    lamps: np.ndarray  # (L, 2) street lamp positions

    @property
    def extent(self) -> tuple[float, float]:
        return float(self.xs[-1]), float(self.ys[-1])

    def to_utm(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(xy, dtype=np.float64) + (self.origin_east, self.origin_north)

    def to_latlon(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = self.to_utm(xy)
        return utm.to_latlon(e[..., 0], e[..., 1], self.zone, self.band)

    def street_points(self, spacing: float, margin: float = 0.0):
        """Points every ``spacing`` m along every street centre line, with the street's direction.

        Returns (points (n, 2), compass headings of the street axis in degrees (0 = north)).
        """
        pts, heads = [], []
        x0, x1, y0, y1 = self.xs[0], self.xs[-1], self.ys[0], self.ys[-1]
        for x in self.xs:
            ys = np.arange(y0 + margin, y1 - margin + 1e-9, spacing)
            pts.append(np.stack([np.full_like(ys, x), ys], 1))
            heads.append(np.zeros(len(ys)))
        for y in self.ys:
            xs = np.arange(x0 + margin, x1 - margin + 1e-9, spacing)
            pts.append(np.stack([xs, np.full_like(xs, y)], 1))
            heads.append(np.full(len(xs), 90.0))
        return np.concatenate(pts), np.concatenate(heads)


def _palette_color(rng: np.random.Generator) -> np.ndarray:
    """A plausible facade colour: stone, brick, plaster or painted."""
    kind = rng.integers(4)
    if kind == 0:  # stone / concrete greys and beiges
        g = rng.uniform(0.45, 0.8)
        return np.clip(g + rng.normal(0, 0.04, 3) + [0.03, 0.01, -0.03], 0, 1)
    if kind == 1:  # brick reds and browns
        return np.array([rng.uniform(0.45, 0.75), rng.uniform(0.2, 0.38), rng.uniform(0.12, 0.3)])
    if kind == 2:  # pastel plaster
        hue = rng.uniform(0, 1)
        return np.clip(0.72 + 0.22 * np.cos(2 * np.pi * (hue + np.array([0, 1 / 3, 2 / 3]))), 0, 1)
    return rng.uniform(0.15, 0.9, 3)  # painted, anything goes


def _styles(rng, style_pool: int) -> list[dict]:
    """Archetypes shared by the whole city: the "styles" distant places reuse."""
    arche = []
    for _ in range(style_pool):
        arche.append(
            dict(
                texture=int(rng.integers(5)),
                base=_palette_color(rng),
                trim=_palette_color(rng),
                window=np.clip(rng.uniform(0.05, 0.35, 3) + rng.uniform(0, 0.25), 0, 1),
                floor_height=rng.uniform(2.9, 4.2),
                window_spacing=rng.uniform(1.8, 4.0),
                window_w=rng.uniform(0.3, 0.75),
                window_h=rng.uniform(0.35, 0.7),
                shop=bool(rng.random() < 0.5),
            )
        )
    return arche


def _cuts(rng, length: float) -> list[float]:
    """Where one block face is cut into facades (8-22 m each, no sliver at the corner)."""
    cuts = [0.0]
    while cuts[-1] < length:
        cuts.append(cuts[-1] + rng.uniform(8, 22))
    cuts[-1] = length
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < 5:
        cuts.pop(-2)
    return cuts


def _facade(rng, arche: list[dict], width: float, color_jitter: float) -> dict:
    ar = arche[int(rng.integers(len(arche)))]
    shift = rng.normal(0, color_jitter, 3)
    has_sign = rng.random() < 0.6
    return dict(
        height=rng.uniform(7, 28) if rng.random() < 0.85 else rng.uniform(30, 45),
        base=np.clip(ar["base"] + shift, 0, 1),
        trim=np.clip(ar["trim"] + shift / 2, 0, 1),
        window=ar["window"],
        sign=rng.uniform(0.05, 1.0, 3) if has_sign else np.zeros(3),
        sign_width=min(rng.uniform(3, 9), width - 1) if has_sign else 0.0,
        sign_seed=int(rng.integers(1 << 30)),
        texture=ar["texture"],
        floor_height=ar["floor_height"],
        window_spacing=ar["window_spacing"],
        window_w=ar["window_w"],
        window_h=ar["window_h"],
        shop=ar["shop"],
    )


def _facades(rng, xs, ys, half: float, arche: list[dict], color_jitter: float):
    """Every facade of every block: its two ends, outward normal and appearance."""
    p0s, p1s, normals, attrs = [], [], [], []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            bx0, bx1 = xs[i] + half, xs[i + 1] - half
            by0, by1 = ys[j] + half, ys[j + 1] - half
            corners = [
                ((bx0, by0), (bx1, by0), (0, -1)),  # south face, walking east
                ((bx1, by0), (bx1, by1), (1, 0)),  # east face, walking north
                ((bx1, by1), (bx0, by1), (0, 1)),  # north face, walking west
                ((bx0, by1), (bx0, by0), (-1, 0)),
            ]  # west face, walking south
            for a, b, nrm in corners:
                a, b = np.array(a), np.array(b)
                length = np.linalg.norm(b - a)
                cuts = _cuts(rng, length)
                d = (b - a) / length
                for c0, c1 in zip(cuts[:-1], cuts[1:]):
                    p0s.append(a + d * c0)
                    p1s.append(a + d * c1)
                    normals.append(nrm)
                    attrs.append(_facade(rng, arche, c1 - c0, color_jitter))
    return p0s, p1s, normals, attrs


def _lamps(xs, ys, half: float) -> list:
    lamps = []
    for x in xs:  # lamps on both sidewalks, staggered
        for k, y in enumerate(np.arange(ys[0] + 12, ys[-1], 24.0)):
            lamps.append((x + (half - 1.2) * (1 if k % 2 else -1), y))
    for y in ys:
        for k, x in enumerate(np.arange(xs[0] + 12, xs[-1], 24.0)):
            lamps.append((x, y + (half - 1.2) * (1 if k % 2 else -1)))
    return lamps


def build_city(
    name: str, seed: int, blocks: int = 6, style_pool: int = 24, color_jitter: float = 0.06
) -> City:
    """Deterministic city ``name`` of ``blocks`` x ``blocks`` blocks."""
    rng = np.random.default_rng([seed, *name.encode()])
    street_width = float(rng.uniform(11, 15))
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(45, 80, blocks))])
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(45, 80, blocks))])
    half = street_width / 2
    arche = _styles(rng, style_pool)
    p0s, p1s, normals, attrs = _facades(rng, xs, ys, half, arche, color_jitter)
    lamps = _lamps(xs, ys, half)

    lat0, lon0 = ANCHORS.get(name, (45.0, 9.0))
    east, north, zone, band = utm.from_latlon(lat0, lon0)
    stack = lambda key: np.array([a[key] for a in attrs])  # noqa: E731
    return City(
        name=name,
        zone=int(zone),
        band=band,
        origin_east=float(np.floor(east)),
        origin_north=float(np.floor(north)),
        xs=xs,
        ys=ys,
        street_width=street_width,
        seg_p0=np.array(p0s),
        seg_p1=np.array(p1s),
        seg_normal=np.array(normals, dtype=np.float64),
        height=stack("height"),
        base_color=stack("base"),
        trim_color=stack("trim"),
        window_color=stack("window"),
        sign_color=stack("sign"),
        sign_width=stack("sign_width"),
        sign_seed=stack("sign_seed"),
        texture=stack("texture"),
        floor_height=stack("floor_height"),
        window_spacing=stack("window_spacing"),
        window_w=stack("window_w"),
        window_h=stack("window_h"),
        shop_floor=stack("shop"),
        lamps=np.array(lamps),
    )
