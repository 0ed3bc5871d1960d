"""Write the embedded synthetic datasets in the course's on-disk format.

    <root>/train/<City>/@...@<placeID>_<City>@.jpg     places of >= 4 images (GSV-XS style)
    <root>/val/{database,queries}/@...@<day|dusk|night>@.jpg
    <root>/test/{database,queries}/@...@<day|dusk|night>@.jpg

Training and evaluation cities are different (as GSV-XS vs SF-XS / Tokyo-XS). Database images
are clean day-time views every ``database_spacing_m`` along every street, looking both ways;
queries are phone-like shots at random street positions under day, dusk or night light. The
``note`` field of evaluation images records the light, so night-only subsets can be evaluated.
Every image draws from its own seeded generator: output bytes do not depend on worker count.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm

from vpr.data.filenames import format_name
from vpr.data.synthetic.render import Camera, Conditions, render
from vpr.data.synthetic.world import (
    MINING_CITY,
    TEST_CITY,
    TRAIN_CITIES,
    VAL_CITY,
    City,
    build_city,
)


@dataclass(frozen=True)
class SyntheticSpec:
    """The ``synthetic`` section of params.yaml (its keys, defaults and ranges: vpr.config.sections.SYNTHETIC)."""

    seed: int
    image_size: tuple
    train_cities: int
    train_blocks: int
    places_per_city: int
    max_images_per_place: int
    place_separation_m: float
    val_blocks: int
    test_blocks: int
    database_spacing_m: float
    val_queries: int
    test_queries: int
    query_aspects: tuple
    style_pool: int
    light_mix: tuple
    jpeg_quality: int
    extra_sets: tuple
    mining_queries: int
    target_images: int

    @classmethod
    def of(cls, settings: dict | None = None) -> SyntheticSpec:
        """The spec from the validated section (vpr.config), or from some of its settings, checked, the schema's
        defaults filled in."""
        from vpr.config.loader import check_settings
        from vpr.config.sections import SYNTHETIC
        from vpr.config.settings import Validated

        values = (
            settings
            if isinstance(settings, Validated)
            else check_settings("synthetic", SYNTHETIC, dict(settings or {}))
        )
        return cls(
            **{
                k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                if isinstance(v, (list, tuple))
                else v
                for k, v in values.items()
            }
        )


_TIMES = ("day", "dusk", "night")
_HOURS = {"day": (9, 17), "dusk": (18, 20), "night": (21, 24)}


def _pano_id(rng: np.random.Generator) -> str:
    return base64.urlsafe_b64encode(rng.bytes(16)).decode()[:22].replace("-", "x").replace("_", "y")


def _timestamp(rng: np.random.Generator, time: str) -> str:
    year, month, day = rng.integers(2015, 2025), rng.integers(1, 13), rng.integers(1, 29)
    h0, h1 = _HOURS[time]
    return f"{year}{month:02d}{day:02d}_{rng.integers(h0, h1):02d}{rng.integers(60):02d}{rng.integers(60):02d}"


def _conditions(rng: np.random.Generator, time: str, phone: bool) -> Conditions:
    """Light, weather and clutter of one shot; ``phone`` = query-like (more clutter, noise, blur)."""
    night, dusk = time == "night", time == "dusk"
    return Conditions(
        time=time,
        sun_azimuth=float(rng.uniform(0, 360)),
        # Phones expose night shots longer: brighter, noisier.
        exposure=float(rng.uniform(0.8, 1.15) if not night else rng.uniform(1.5, 2.5)),
        tint=tuple(float(t) for t in 1 + rng.normal(0, 0.05 if phone else 0.02, 3)),
        lit_seed=int(rng.integers(1 << 30)),
        lit_fraction=float(rng.uniform(0.2, 0.5)) if (night or dusk) else 0.0,
        fog_distance=float(rng.uniform(50, 90) if night else rng.uniform(110, 220)),
        noise=float(
            rng.uniform(0.035, 0.07) if night else rng.uniform(0.005, 0.025 if phone else 0.012)
        ),
        blur=float(rng.uniform(0.0, 0.9) if phone else 0.0),
        vehicles=int(rng.poisson(0.7 if phone else 0.2)),
        pedestrians=int(rng.poisson(1.0 if phone else 0.3)),
        occluder_seed=int(rng.integers(1 << 30)),
    )


def _phone_camera(rng: np.random.Generator, x: float, y: float, axis: float) -> Camera:
    return Camera(
        x=x,
        y=y,
        heading=float(axis + np.clip(rng.normal(0, 8), -25, 25)),
        height=float(rng.uniform(1.4, 2.0)),
        pitch=float(np.clip(rng.normal(0, 3), -8, 8)),
        roll=float(np.clip(rng.normal(0, 2.5), -8, 8)),
        fov=float(rng.uniform(65, 95)),
    )


def _job(
    city: City,
    rel_dir: str,
    cam: Camera,
    cond: Conditions,
    rng: np.random.Generator,
    note: str,
    size: tuple | None = None,
):
    """(city, relative path, camera, conditions, (H, W) or None = synthetic.image_size) of one image."""
    east, north = city.to_utm(np.array([cam.x, cam.y]))
    lat, lon = city.to_latlon(np.array([cam.x, cam.y]))
    name = format_name(
        east,
        north,
        city.zone,
        city.band,
        lat,
        lon,
        _pano_id(rng),
        "00",
        cam.heading,
        cam.pitch,
        f"{int(round(cam.roll)):03d}",
        f"{cam.height:.1f}",
        _timestamp(rng, cond.time),
        note,
    )
    return (city.name, f"{rel_dir}/{name}", cam, cond, size)


def _random_street_point(city: City, rng: np.random.Generator):
    """Uniform point on the street network, with the street's axis heading."""
    lx, ly = city.xs[-1] - city.xs[0], city.ys[-1] - city.ys[0]
    n_v, n_h = len(city.xs), len(city.ys)
    if rng.random() < n_v * ly / (n_v * ly + n_h * lx):
        return float(city.xs[rng.integers(n_v)]), float(rng.uniform(city.ys[0], city.ys[-1])), 0.0
    return float(rng.uniform(city.xs[0], city.xs[-1])), float(city.ys[rng.integers(n_h)]), 90.0


def _lateral(city: City, rng: np.random.Generator) -> float:
    return rng.uniform(-1, 1) * (city.street_width / 2 - 2.5)


def _street_view(city: City, rel_dir: str, spec: SyntheticSpec, seed_key: list, note: str = "day"):
    """Database-style views every ``database_spacing_m`` along every street, both directions."""
    jobs = []
    points, axes = city.street_points(spec.database_spacing_m)
    for i, (p, axis) in enumerate(zip(points, axes)):
        for j, flip in enumerate((0, 180)):
            rng = np.random.default_rng([spec.seed, *seed_key, i, j])
            cam = Camera(
                x=float(p[0]), y=float(p[1]), heading=float(axis + flip + rng.normal(0, 3))
            )
            jobs.append(_job(city, rel_dir, cam, _conditions(rng, "day", False), rng, note))
    return jobs


def _photo_shape(spec: SyntheticSpec, aspect, fov: float) -> tuple[tuple[int, int], float]:
    """(H, W) of a photo of ``aspect`` (width, height) whose longer side is image_size's longer side, and its
    horizontal field of view when ``fov`` spans the longer side (a phone turned upright sees less across)."""
    long = max(spec.image_size)
    aw, ah = aspect
    h, w = (round(long * ah / aw), long) if aw >= ah else (long, round(long * aw / ah))
    if w >= h:
        return (h, w), fov
    return (h, w), float(np.degrees(2 * np.arctan(np.tan(np.radians(fov) / 2) * w / h)))


def _phone_shots(
    city: City,
    rel_dir: str,
    spec: SyntheticSpec,
    seed_key: list,
    count: int,
    times=None,
    aspects=None,
):
    """Query-style shots at random street positions; the note field records the light. ``aspects``: the
    photo shapes to draw from (None: synthetic.image_size)."""
    jobs = []
    for q in range(count):
        rng = np.random.default_rng([spec.seed, *seed_key, q])
        time = times or _TIMES[rng.choice(3, p=spec.light_mix)]
        x, y, axis = _random_street_point(city, rng)
        d = np.radians(axis)
        side = _lateral(city, rng)
        x, y = x + np.cos(d) * side, y - np.sin(d) * side
        cam = _phone_camera(rng, x, y, axis + 180 * rng.integers(2))
        size = None
        if aspects is not None:
            size, cam.fov = _photo_shape(spec, aspects[rng.integers(len(aspects))], cam.fov)
        jobs.append(_job(city, rel_dir, cam, _conditions(rng, time, True), rng, time, size))
    return jobs


def _places(city: City, ci: int, spec: SyntheticSpec):
    """Training places of one city: [(place_id, point, street axis, heading of the place)]."""
    rng = np.random.default_rng([spec.seed, 1, ci])
    points, axes = city.street_points(5.0, margin=8.0)
    chosen = []
    for k in rng.permutation(len(points)):
        if all(np.hypot(*(points[k] - points[c])) >= spec.place_separation_m for c in chosen):
            chosen.append(k)
        if len(chosen) == spec.places_per_city:
            break
    out = []
    for place_id, k in enumerate(chosen):
        prng = np.random.default_rng([spec.seed, 2, ci, place_id])
        out.append((place_id, points[k], axes[k], axes[k] + 180 * prng.integers(2)))
    return out


def plan(spec: SyntheticSpec):
    """Every image to render: (city name, relative path, camera, conditions), deterministic."""
    jobs = []
    for ci, name in enumerate(TRAIN_CITIES[: spec.train_cities]):
        city = build_city(name, spec.seed, spec.train_blocks, spec.style_pool)
        for place_id, point, street_axis, axis in _places(city, ci, spec):
            prng = np.random.default_rng([spec.seed, 2, ci, place_id])
            prng.integers(2)  # (the draw that chose the place's heading)
            note = f"{place_id}_{name}"
            d = np.radians(street_axis)
            for n in range(int(prng.integers(4, spec.max_images_per_place + 1))):
                if n == 0:  # one street-view-like shot per place, as GSV mixes years of car imagery
                    cam = Camera(
                        x=float(point[0]),
                        y=float(point[1]),
                        heading=float(axis + prng.normal(0, 3)),
                    )
                    jobs.append(
                        _job(
                            city, f"train/{name}", cam, _conditions(prng, "day", False), prng, note
                        )
                    )
                    continue
                along, side = prng.uniform(-3, 3), _lateral(city, prng) * 0.5
                x = point[0] + np.sin(d) * along + np.cos(d) * side
                y = point[1] + np.cos(d) * along - np.sin(d) * side
                time = _TIMES[prng.choice(3, p=spec.light_mix)]
                cam = _phone_camera(prng, x, y, axis)
                jobs.append(
                    _job(city, f"train/{name}", cam, _conditions(prng, time, True), prng, note)
                )
            if (
                "night_copies" in spec.extra_sets
            ):  # what a day-to-night GAN would make of the street-view shot
                crng = np.random.default_rng([spec.seed, 7, ci, place_id])
                cam = _phone_camera(crng, float(point[0]), float(point[1]), axis)
                jobs.append(
                    _job(
                        city,
                        f"night_copies/{name}",
                        cam,
                        _conditions(crng, "night", True),
                        crng,
                        note,
                    )
                )
        if "target_night" in spec.extra_sets:  # unlabeled night photos of the training cities
            jobs += _phone_shots(
                city,
                "target_night",
                spec,
                [8, ci],
                spec.target_images // spec.train_cities,
                times="night",
            )

    for si, (split, name, blocks, n_queries) in enumerate(
        [
            ("val", VAL_CITY, spec.val_blocks, spec.val_queries),
            ("test", TEST_CITY, spec.test_blocks, spec.test_queries),
        ]
    ):
        city = build_city(name, spec.seed, blocks, spec.style_pool)
        jobs += _street_view(city, f"{split}/database", spec, [3, si])
        jobs += _phone_shots(
            city, f"{split}/queries", spec, [4, si], n_queries, aspects=spec.query_aspects
        )

    if (
        "mining" in spec.extra_sets
    ):  # a database/queries training set (pitts30k-style) in its own city
        city = build_city(MINING_CITY, spec.seed, spec.val_blocks, spec.style_pool)
        jobs += _street_view(city, "mining/database", spec, [5])
        jobs += _phone_shots(city, "mining/queries", spec, [6], spec.mining_queries)
    return jobs


_worker_state: dict = {}


def _init_worker(spec: SyntheticSpec, root: str):
    _worker_state.update(spec=spec, root=root, cities={})


def _render_one(job) -> None:
    city_name, rel_path, cam, cond, size = job
    spec, cities = _worker_state["spec"], _worker_state["cities"]
    if city_name not in cities:
        blocks = {
            VAL_CITY: spec.val_blocks,
            TEST_CITY: spec.test_blocks,
            MINING_CITY: spec.val_blocks,
        }.get(city_name, spec.train_blocks)
        cities[city_name] = build_city(city_name, spec.seed, blocks, spec.style_pool)
    pixels = render(cities[city_name], cam, cond, tuple(size or spec.image_size))
    Image.fromarray(pixels).save(
        os.path.join(_worker_state["root"], rel_path), quality=spec.jpeg_quality
    )


def generate(root: str | os.PathLike, spec: SyntheticSpec, workers: int | None = None) -> dict:
    """Render every image of ``spec`` under ``root`` (replaced atomically). Returns a summary."""
    root = os.fspath(root)
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    jobs = plan(spec)
    for d in sorted({os.path.dirname(j[1]) for j in jobs}):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    workers = workers or os.cpu_count() or 1
    try:
        if workers > 1:
            with ProcessPoolExecutor(
                workers, initializer=_init_worker, initargs=(spec, tmp)
            ) as pool:
                for _ in tqdm(
                    pool.map(_render_one, jobs, chunksize=32),
                    total=len(jobs),
                    desc="rendering synthetic city",
                    unit="img",
                ):
                    pass
        else:
            _init_worker(spec, tmp)
            for job in tqdm(jobs, desc="rendering synthetic city", unit="img"):
                _render_one(job)
        summary = {"images": len(jobs)}
        for d in sorted({os.path.dirname(j[1]) for j in jobs}):
            summary[d] = sum(os.path.dirname(j[1]) == d for j in jobs)
        with open(os.path.join(tmp, "manifest.json"), "w") as fh:
            json.dump(
                {
                    "spec": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()
                    },
                    "counts": summary,
                },
                fh,
                indent=2,
            )
        if os.path.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
