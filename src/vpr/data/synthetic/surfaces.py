"""What a camera ray hits looks like: the albedo and emitted light of facade points (wall texture, windows, shop
fronts, signs, cornice, doors) and of the ground, for the renderer (vpr.data.synthetic.render)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vpr.data.synthetic.world import BANDS, BRICK, PANELS, PILASTERS, City

if TYPE_CHECKING:
    from vpr.data.synthetic.render import Conditions


def _hash(*parts: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random floats in [0, 1) from integer arrays (vectorised)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for p in parts:
            h = (h ^ np.asarray(p).astype(np.int64).astype(np.uint64)) * np.uint64(
                0xBF58476D1CE4E5B9
            )
            h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _frac(x):
    return x - np.floor(x)


def facade(city: City, b, u, v, width, cond: Conditions, lit_p: float):
    """Albedo and emitted light of facade points (building b, u m from its left edge, v m high)."""
    color = _wall(city, b, u, v)
    emit = np.zeros_like(color)
    ground = np.where(city.shop_floor[b], city.floor_height[b] * 1.25, city.floor_height[b])
    _windows(city, b, u, v, width, ground, cond, lit_p, color, emit)
    _shop_and_sign(city, b, u, v, width, ground, cond, lit_p, color, emit)
    # Cornice, building edges, doors.
    trim = city.trim_color[b]
    color[v > city.height[b] - 0.7] = trim[v > city.height[b] - 0.7]
    edge = (u < 0.15) | (u > width - 0.15)
    color[edge] *= 0.55
    door = (v < 2.4) & (np.abs(u - width * (0.2 + 0.6 * _hash(b))) < 0.7) & ~city.shop_floor[b]
    color[door] = trim[door] * 0.45
    return color, emit


def _wall(city: City, b, u, v):
    """The wall's albedo by archetype (brick, bands, panels, pilasters)."""
    fh, sp, tex = city.floor_height[b], city.window_spacing[b], city.texture[b]
    trim = city.trim_color[b]
    color = city.base_color[b].copy()
    brick = tex == BRICK
    if brick.any():
        row = np.floor(v[brick] / 0.3)
        uu = u[brick] / 0.6 + 0.5 * (row % 2)
        mortar = (_frac(v[brick] / 0.3) < 0.18) | (_frac(uu) < 0.08)
        jitter = 0.85 + 0.3 * _hash(b[brick], row, np.floor(uu))
        color[brick] *= np.where(mortar, 1.25, jitter)[:, None]
    bands = tex == BANDS
    color[bands] = np.where((_frac(v[bands] / fh[bands]) < 0.2)[:, None], trim[bands], color[bands])
    panels = tex == PANELS
    seam = (_frac(u[panels] / 1.5) < 0.06) | (_frac(v[panels] / 1.2) < 0.06)
    color[panels] *= np.where(seam, 0.7, 1.0)[:, None]
    pil = tex == PILASTERS
    color[pil] = np.where((_frac(u[pil] / sp[pil] + 0.5) < 0.14)[:, None], trim[pil], color[pil])
    return color


def _windows(
    city: City, b, u, v, width, ground, cond: Conditions, lit_p: float, color, emit
) -> None:
    """Windows (frames, glass, lit at dusk and night) on the upper floors, painted into color / emit."""
    fh, sp, hb, trim = (
        city.floor_height[b],
        city.window_spacing[b],
        city.height[b],
        city.trim_color[b],
    )
    fu, fv = _frac(u / sp), _frac((v - ground) / fh)
    upper = (v > ground) & (v < hb - 1.0) & (u > 0.6) & (u < width - 0.6)
    win = (
        upper
        & (np.abs(fu - 0.5) < city.window_w[b] / 2)
        & (np.abs(fv - 0.5) < city.window_h[b] / 2)
    )
    frame = (
        upper
        & ~win
        & (np.abs(fu - 0.5) < city.window_w[b] / 2 + 0.06)
        & (np.abs(fv - 0.5) < city.window_h[b] / 2 + 0.05)
    )
    color[frame] = trim[frame] * 0.9
    glass = city.window_color[b] * (0.7 + 0.6 * fv)[:, None]  # sky reflection brighter at the top
    color[win] = glass[win]
    if lit_p > 0 and win.any():
        wid = _hash(
            b[win],
            np.floor(u[win] / sp[win]),
            np.floor((v[win] - ground[win]) / fh[win]),
            np.full(win.sum(), cond.lit_seed),
        )
        lit = wid < lit_p
        warm = np.array([1.0, 0.82, 0.5]) * (0.6 + 0.4 * _hash(b[win], wid * 1e6))[:, None]
        e = emit[win]
        e[lit] = warm[lit]
        emit[win] = e


def _shop_and_sign(
    city: City, b, u, v, width, ground, cond: Conditions, lit_p: float, color, emit
) -> None:
    """Shop fronts and signs (lettered, lit at dusk and night) on the ground floor, painted into color / emit."""
    shop = (
        city.shop_floor[b]
        & (v < ground - 1.4)
        & (v > 0.3)
        & (_frac(u / 4.0) > 0.12)
        & (_frac(u / 4.0) < 0.9)
    )
    color[shop] = np.array([0.12, 0.14, 0.16]) + 0.15 * city.window_color[b[shop]]
    if lit_p > 0:
        emit[shop] = (
            np.array([0.9, 0.75, 0.5])
            * (0.3 + 0.5 * (_hash(b[shop], cond.lit_seed) < 0.6))[:, None]
        )
    sw = city.sign_width[b]
    in_sign = (
        (sw > 0) & (np.abs(u - width / 2) < sw / 2) & (v > ground - 1.25) & (v < ground - 0.25)
    )
    color[in_sign] = city.sign_color[b[in_sign]]
    letters = (
        in_sign
        & (v > ground - 1.05)
        & (v < ground - 0.45)
        & (_hash(city.sign_seed[b], np.floor(u / 0.4)) < 0.55)
        & (_frac(u / 0.4) > 0.2)
    )
    ink = np.where((city.sign_color[b[letters]].mean(1) > 0.5)[:, None], 0.05, 0.95)
    color[letters] = ink
    if lit_p > 0:  # signs are lit at dusk and night
        emit[in_sign] = color[in_sign] * 0.9


def ground(city: City, px, py):
    """Road albedo at ground points: asphalt, sidewalks, dashed centre lines, crosswalks."""
    half, sidewalk = city.street_width / 2, 2.6

    def nearest(lines, p):
        i = np.clip(np.searchsorted(lines, p), 1, len(lines) - 1)
        return np.minimum(np.abs(p - lines[i - 1]), np.abs(p - lines[i]))

    dx, dy = nearest(city.xs, px), nearest(city.ys, py)
    noise = 0.9 + 0.2 * _hash(np.floor(px * 3), np.floor(py * 3))
    color = np.empty(px.shape + (3,))
    color[:] = np.array([0.34, 0.34, 0.36])
    color *= noise[..., None]
    walk = ((dx > half - sidewalk) & (dy > half)) | ((dy > half - sidewalk) & (dx > half))
    color[walk] = np.array([0.62, 0.6, 0.56]) * noise[walk, None]
    dash = ((dx < 0.12) & (dy > half) & (_frac(py / 6) < 0.5)) | (
        (dy < 0.12) & (dx > half) & (_frac(px / 6) < 0.5)
    )
    color[dash] = (0.9, 0.85, 0.55)
    cross = (
        (dx < half - sidewalk) & (dy > half + 0.3) & (dy < half + 3.3) & (_frac(px / 0.9) < 0.5)
    ) | ((dy < half - sidewalk) & (dx > half + 0.3) & (dx < half + 3.3) & (_frac(py / 0.9) < 0.5))
    color[cross] = (0.88, 0.88, 0.86)
    return color
