import hashlib
import os

import numpy as np
import utm
from PIL import Image

from tests.helpers import TINY_SYNTHETIC, eval_set
from vpr.data.filenames import FIELDS, parse_name
from vpr.data.groundtruth import build_train_set, list_images
from vpr.data.synthetic.generate import SyntheticSpec, generate
from vpr.data.synthetic.render import Camera, Conditions, render
from vpr.data.synthetic.world import build_city


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            h.update(os.path.relpath(os.path.join(dirpath, f), root).encode())
            h.update(open(os.path.join(dirpath, f), "rb").read())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tiny_city, tmp_path):
    again = tmp_path / "again"
    generate(again, SyntheticSpec.of(TINY_SYNTHETIC), workers=2)
    assert _digest(again) == _digest(tiny_city)
    other = tmp_path / "other"
    generate(other, SyntheticSpec.of({**TINY_SYNTHETIC, "seed": 1}), workers=1)
    assert _digest(other) != _digest(tiny_city)


def test_course_layout_and_all_fourteen_fields(tiny_city):
    assert sorted(os.listdir(tiny_city / "train"))
    for split in ("val", "test"):
        assert sorted(os.listdir(tiny_city / split)) == ["database", "queries"]
    for path in list_images(tiny_city):
        name = parse_name(path)
        assert all(getattr(name, f) != "" for f in FIELDS), path
        if "queries" not in path:
            assert Image.open(path).size == (64, 48)


def test_query_photos_come_in_the_asked_aspect_ratios_with_the_longer_side_of_the_image_size(
    tiny_city,
):
    shapes = {
        Image.open(p).size
        for split in ("val", "test")
        for p in list_images(tiny_city / split / "queries")
    }
    assert shapes == {(64, 48), (48, 64), (64, 36), (64, 64)}  # 4:3, 3:4, 16:9, 1:1


def test_coordinates_are_real_utm_consistent_with_lat_lon(tiny_city):
    for path in list_images(tiny_city)[::25]:
        n = parse_name(path)
        east, north, zone, band = utm.from_latlon(float(n.lat), float(n.lon))
        assert (int(n.utm_zone), n.utm_band) == (zone, band)
        assert (
            abs(east - n.utm_east) < 1.5 and abs(north - n.utm_north) < 1.5
        )  # 5 decimals of a degree ~ 1 m


def test_training_places_are_gsv_style(tiny_city):
    ts = build_train_set(tiny_city / "train", min_images=4)
    assert ts.num_places == TINY_SYNTHETIC["places_per_city"] * TINY_SYNTHETIC["train_cities"]
    for p in range(ts.num_places):
        city = ts.place_city[p]
        members = ts.images_of(p)
        assert all(os.path.basename(os.path.dirname(ts.paths[i])) == city for i in members)
        spread = np.linalg.norm(ts.utm[members] - ts.utm[members].mean(0), axis=1).max()
        assert len(members) >= 4 and spread < 10  # one place = one spot, seen several times


def test_queries_are_marked_by_light_and_night_is_darker(tiny_city):
    s = eval_set(tiny_city / "test")
    notes = {parse_name(p).note for p in s.queries_paths}
    assert notes <= {"day", "dusk", "night"} and s.queries_night.any()
    brightness = np.array([np.asarray(Image.open(p)).mean() for p in s.queries_paths])
    assert brightness[s.queries_night].mean() < brightness[~s.queries_night].mean() - 20
    assert (s.positives.counts > 0).all()  # every query has database images within 25 m


def test_appearance_is_a_function_of_position():
    city = build_city("Greyhaven", 0, blocks=4)
    x = float(city.xs[1])
    base = render(city, Camera(x, 40.0, 0.0), Conditions(), (48, 64)).astype(float)
    assert np.array_equal(base, render(city, Camera(x, 40.0, 0.0), Conditions(), (48, 64)))
    near = [
        np.abs(render(city, Camera(x, 40.0 + d, 0.0), Conditions(), (48, 64)) - base).mean()
        for d in (5, 10)
    ]
    far = [
        np.abs(
            render(city, Camera(float(city.xs[3]), y, 0.0), Conditions(), (48, 64)) - base
        ).mean()
        for y in (120.0, 200.0)
    ]
    assert max(near) < min(far)
