"""Ray-cast street-level views of a synthetic :class:`~vpr.data.synthetic.world.City`.

One ray per image column finds the nearest facade; rows above it are sky, below it road.
Facade pixels get a procedural texture (windows, bricks, bands, pilasters, shop fronts,
signs with "lettering"), lit by the time of day; far pixels fade into fog. Queries add what
real phone photos add: viewpoint and zoom changes, roll, dusk/night lighting with lit windows
and street lamps, vehicles and pedestrians in the lower half, sensor noise and blur.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from vpr.data.synthetic import surfaces
from vpr.data.synthetic.world import City

MAX_DISTANCE = 220.0


@dataclass
class Camera:
    x: float
    y: float
    heading: float  # compass degrees, 0 = north (+y), 90 = east (+x)
    height: float = 2.5  # metres above the road
    pitch: float = 0.0  # degrees, positive = looking up
    roll: float = 0.0  # degrees, positive = clockwise image rotation
    fov: float = 90.0  # horizontal field of view, degrees


@dataclass
class Conditions:
    time: str = "day"  # day | dusk | night
    sun_azimuth: float = 135.0  # compass degrees (day shading of facades)
    exposure: float = 1.0
    tint: tuple = (1.0, 1.0, 1.0)  # white balance of this shot
    lit_seed: int = 0  # which windows are lit (dusk / night)
    lit_fraction: float = 0.0
    fog_distance: float = 160.0
    noise: float = 0.01
    blur: float = 0.0  # Gaussian blur radius in output pixels
    vehicles: int = 0
    pedestrians: int = 0
    occluder_seed: int = 0
    extras: dict = field(default_factory=dict)


def _cast(city: City, origin: np.ndarray, dirs: np.ndarray):
    """Nearest front-facing facade hit by each ray: (distance, segment index, position along it)."""
    mid = (city.seg_p0 + city.seg_p1) / 2
    near = np.nonzero(np.linalg.norm(mid - origin, axis=1) < MAX_DISTANCE + 30)[0]
    p0, e = city.seg_p0[near], city.seg_p1[near] - city.seg_p0[near]
    normal = city.seg_normal[near]
    rel = p0 - origin  # (S, 2)
    dx, dy = dirs[:, :1], dirs[:, 1:]  # (R, 1)
    denom = dx * e[:, 1] - dy * e[:, 0]  # cross(d, e), (R, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rel[:, 0] * e[:, 1] - rel[:, 1] * e[:, 0]) / denom
        s = (rel[:, 0] * dy - rel[:, 1] * dx) / denom
    facing = (dirs @ normal.T) < 0
    valid = facing & (np.abs(denom) > 1e-9) & (t > 0.05) & (s >= 0) & (s <= 1) & (t < MAX_DISTANCE)
    t = np.where(valid, t, np.inf)
    k = np.argmin(t, axis=1)
    rows = np.arange(len(dirs))
    dist = t[rows, k]
    seg_len = np.linalg.norm(e[k], axis=1)
    return dist, near[k], s[rows, k] * seg_len, seg_len


_SKY = {
    "day": ((0.78, 0.84, 0.9), (0.35, 0.55, 0.85)),
    "dusk": ((0.95, 0.62, 0.38), (0.28, 0.24, 0.45)),
    "night": ((0.07, 0.07, 0.12), (0.01, 0.01, 0.03)),
}
_AMBIENT = {"day": 1.0, "dusk": 0.5, "night": 0.16}
_LIGHT_TINT = {"day": (1.0, 1.0, 1.0), "dusk": (1.0, 0.78, 0.6), "night": (0.7, 0.8, 1.1)}


def render(
    city: City, cam: Camera, cond: Conditions, size=(96, 128), supersample: int = 2
) -> np.ndarray:
    """HxWx3 uint8 view of ``city`` from ``cam`` under ``cond``."""
    H, W = size[0] * supersample, size[1] * supersample
    f = (W / 2) / np.tan(np.radians(cam.fov) / 2)
    heading = np.radians(cam.heading)
    alpha = np.arctan((np.arange(W) + 0.5 - W / 2) / f)
    dirs = np.stack([np.sin(heading + alpha), np.cos(heading + alpha)], 1)
    origin = np.array([cam.x, cam.y])
    dist, seg, u, width = _cast(city, origin, dirs)
    hit = np.isfinite(dist)
    depth = np.where(hit, dist * np.cos(alpha), np.inf)  # perpendicular depth per column

    yr = (H / 2 + f * np.tan(np.radians(cam.pitch))) - (
        np.arange(H) + 0.5
    )  # up from the horizon, px
    with np.errstate(invalid="ignore"):
        v = (cam.height + depth[None, :] * yr[:, None] / f).astype(np.float32)
    b = seg  # one facade segment per building
    wall = hit[None, :] & (v >= 0) & (v <= city.height[b][None, :])
    ground = ~wall & (yr[:, None] < 0)
    sky = ~wall & ~ground

    time = cond.time
    ambient = _AMBIENT[time] * cond.exposure
    light_tint = np.array(_LIGHT_TINT[time]) * np.array(cond.tint)
    lit_p = cond.lit_fraction if time != "day" else 0.0
    horizon, zenith = (np.array(c) for c in _SKY[time])
    fog_color = horizon * (0.9 if time == "day" else 1.0)
    img = np.empty((H, W, 3), dtype=np.float32)

    def fogged(color, distance):  # far things fade into the haze (or the dark)
        keep = np.exp(-distance / cond.fog_distance)[:, None]
        return color * keep + fog_color * (1 - keep)

    rr, cc = np.nonzero(wall)
    albedo, emit = surfaces.facade(city, b[cc], u[cc], v[rr, cc], width[cc], cond, lit_p)
    sun = np.array([np.sin(np.radians(cond.sun_azimuth)), np.cos(np.radians(cond.sun_azimuth))])
    shade = (
        (0.7 + 0.3 * np.clip(city.seg_normal[b[cc]] @ sun, 0, 1))[:, None] if time == "day" else 1.0
    )
    img[rr, cc] = fogged(albedo * ambient * light_tint * shade + emit, dist[cc])

    gr, gc = np.nonzero(ground)
    g = cam.height * f / -yr[gr]  # forward depth of the ground point
    reach = g / np.cos(alpha[gc])
    road = surfaces.ground(city, cam.x + dirs[gc, 0] * reach, cam.y + dirs[gc, 1] * reach)
    img[gr, gc] = fogged(road * ambient * light_tint, reach)

    sr, sc = np.nonzero(sky)
    k = np.clip(yr[sr] / (H / 2), 0, 1)[:, None]
    img[sr, sc] = (horizon * (1 - k) + zenith * k) * np.array(cond.tint) * min(cond.exposure, 1.3)

    _draw_lamps(img, city, cam, cond, f, depth, yr, dirs, heading)
    _draw_occluders(img, cond, ambient * light_tint)

    out = img.reshape(size[0], supersample, size[1], supersample, 3).mean((1, 3))
    rng = np.random.default_rng(cond.occluder_seed + 7)
    out = out + rng.normal(0, cond.noise, out.shape)
    pic = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
    if cam.roll:
        pic = _rotate_crop(pic, cam.roll)
    if cond.blur > 0:
        pic = pic.filter(ImageFilter.GaussianBlur(cond.blur))
    return np.asarray(pic)


def _draw_lamps(img, city, cam, cond, f, depth, yr, dirs, heading):
    """Lamp posts (and their glow after dark) projected into the view, hidden behind facades."""
    H, W, _ = img.shape
    fwd = np.array([np.sin(heading), np.cos(heading)])
    right = np.array([np.cos(heading), -np.sin(heading)])
    rel = city.lamps - [cam.x, cam.y]
    z, xr = rel @ fwd, rel @ right
    keep = (z > 1.5) & (z < 120)
    rows = np.arange(H)[:, None]
    cols = np.arange(W)[None, :]
    for zi, xi in zip(z[keep], xr[keep]):
        col = W / 2 + f * xi / zi
        if not (0 <= col < W) or zi > depth[int(col)]:
            continue
        top = yr[0] - f * (5.0 - cam.height) / zi  # image row of the lamp head (5 m up)
        bottom = yr[0] + f * cam.height / zi  # image row of its foot
        half_w = max(0.5, f * 0.09 / zi)
        c0, c1 = int(max(col - half_w, 0)), int(min(col + half_w + 1, W))
        r0, r1 = int(max(top, 0)), int(min(bottom, H))
        if r1 > r0 and c1 > c0:
            img[r0:r1, c0:c1] = img[r0:r1, c0:c1] * 0.3 + 0.06
        if cond.time != "day":
            radius = max(1.5, f * 0.7 / zi)
            g0, g1 = int(max(top - 3 * radius, 0)), int(min(top + 3 * radius + 1, H))
            h0, h1 = int(max(col - 3 * radius, 0)), int(min(col + 3 * radius + 1, W))
            if g1 <= g0 or h1 <= h0:
                continue
            glow = np.exp(
                -((rows[g0:g1] - top) ** 2 + (cols[:, h0:h1] - col) ** 2) / (2 * radius**2)
            )
            strength = 1.1 if cond.time == "night" else 0.5
            img[g0:g1, h0:h1] += strength * glow[..., None] * np.array([1.0, 0.85, 0.55])


def _draw_occluders(img, cond: Conditions, light):
    """Vehicles and pedestrians, mostly in the lower half: what hides facades in real queries."""
    if not (cond.vehicles or cond.pedestrians):
        return
    H, W, _ = img.shape
    rng = np.random.default_rng(cond.occluder_seed)
    rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
    for _ in range(cond.vehicles):
        w = W * rng.uniform(0.15, 0.38)
        cx, bottom = rng.uniform(-0.1, 1.1) * W, H * rng.uniform(0.8, 1.05)
        h = w * rng.uniform(0.35, 0.5)
        body = rng.uniform(0.05, 0.95, 3)
        box = (np.abs(cols - cx) < w / 2) & (rows > bottom - h * 0.55) & (rows < bottom - h * 0.1)
        cabin = (np.abs(cols - cx) < w * 0.33) & (rows > bottom - h) & (rows <= bottom - h * 0.55)
        glass = cabin & (np.abs(cols - cx) < w * 0.3) & (rows > bottom - h * 0.93)
        wheel = (
            ((cols - (cx - w * 0.3)) ** 2 + (rows - (bottom - h * 0.12)) ** 2) < (h * 0.16) ** 2
        ) | (((cols - (cx + w * 0.3)) ** 2 + (rows - (bottom - h * 0.12)) ** 2) < (h * 0.16) ** 2)
        img[box | cabin] = body * light
        img[glass] = np.array([0.1, 0.12, 0.15]) * light
        img[wheel] = 0.03
        if cond.time == "night":  # headlights or tail lights
            lamp = (np.abs(rows - (bottom - h * 0.35)) < h * 0.06) & (
                np.abs(np.abs(cols - cx) - w * 0.38) < w * 0.05
            )
            img[lamp] = (1.0, 0.95, 0.8) if rng.random() < 0.5 else (1.0, 0.15, 0.1)
    for _ in range(cond.pedestrians):
        h = H * rng.uniform(0.18, 0.4)
        cx, bottom = rng.uniform(0, W), H * rng.uniform(0.75, 1.0)
        w = h * 0.28
        body = (np.abs(cols - cx) < w / 2) & (rows > bottom - h * 0.85) & (rows < bottom)
        head = ((cols - cx) ** 2 + (rows - (bottom - h * 0.92)) ** 2) < (h * 0.08) ** 2
        img[body] = rng.uniform(0.05, 0.8, 3) * light
        img[head] = np.array([0.8, 0.6, 0.45]) * light


def _rotate_crop(pic: Image.Image, degrees: float) -> Image.Image:
    """Rotate by ``degrees`` clockwise and zoom in just enough to hide the empty corners."""
    W, H = pic.size
    rot = pic.rotate(-degrees, resample=Image.BILINEAR)
    a = np.radians(abs(degrees))
    scale = np.cos(a) + np.sin(a) * max(W / H, H / W)
    cw, ch = W / scale, H / scale
    box = ((W - cw) / 2, (H - ch) / 2, (W + cw) / 2, (H + ch) / 2)
    return rot.resize((W, H), Image.BILINEAR, box=box)
