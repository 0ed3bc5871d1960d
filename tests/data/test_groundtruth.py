import os

import numpy as np
import pytest

from tests.helpers import eval_set
from vpr.data import groundtruth as gt
from vpr.data.filenames import format_name
from vpr.errors import DataError


def _touch(folder, east, north, note=""):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, format_name(east, north, 33, "T", note=note))
    open(path, "wb").close()
    return path


def test_positives_match_brute_force_distances():
    rng = np.random.default_rng(0)
    db = rng.uniform(0, 300, (400, 2))
    q = rng.uniform(-20, 320, (150, 2))
    pos = gt.positives_within(db, q, 25.0)
    dist = np.linalg.norm(q[:, None] - db[None], axis=2)
    for i in range(len(q)):
        assert pos[i].tolist() == np.nonzero(dist[i] <= 25.0)[0].tolist()
    assert (pos.counts == 0).any(), "the random layout should include queries without positives"


def test_eval_set_is_built_over_sorted_paths(tmp_path):
    # Written in an order that differs from the sorted one: the GT must follow sorted paths.
    coords = [(500.0, 100.0), (100.0, 100.0), (300.0, 100.0)]
    for e, n in coords:
        _touch(tmp_path / "s/database", e, n)
    _touch(tmp_path / "s/queries", 105.0, 100.0, note="night")
    _touch(tmp_path / "s/queries", 900.0, 100.0, note="day")
    s = eval_set(tmp_path / "s", radius_m=25, check="none")
    assert list(s.database_paths) == sorted(s.database_paths)
    assert list(s.queries_paths) == sorted(s.queries_paths)
    near = int(np.argmin(np.abs(s.database_utm[:, 0] - 100.0)))
    q_near = int(np.argmin(np.abs(s.queries_utm[:, 0] - 105.0)))
    assert s.positives[q_near].tolist() == [near]
    assert s.positives[1 - q_near].tolist() == []  # no positive: still a query, counted as a miss
    assert s.queries_night[q_near] and not s.queries_night[1 - q_near]


def test_saved_ground_truth_loads_without_pickle(tmp_path):
    rng = np.random.default_rng(1)
    for e, n in rng.uniform(0, 100, (20, 2)):
        _touch(tmp_path / "s/database", e, n)
    for e, n in rng.uniform(0, 100, (5, 2)):
        _touch(tmp_path / "s/queries", e, n)
    built = eval_set(tmp_path / "s", check="none")
    gt.save_eval_set(built, tmp_path / "gt")
    for f in os.listdir(tmp_path / "gt"):
        if f.endswith(".npy"):
            np.load(tmp_path / "gt" / f, allow_pickle=False)  # raises if anything was pickled
    loaded = gt.load_eval_set(tmp_path / "gt")
    assert np.array_equal(loaded.positives.indices, built.positives.indices)
    assert list(loaded.database_paths) == list(built.database_paths)


def test_training_places_come_from_the_note_field(tmp_path):
    for i in range(5):
        _touch(tmp_path / "train/Rome", 10.0 + i, 20.0, note="284_Rome")
    for i in range(3):
        _touch(tmp_path / "train/Rome", 500.0 + i, 20.0, note="7_Rome")  # < 4 images: dropped
    for i in range(4):
        _touch(
            tmp_path / "train/Paris", 900.0 + i, 20.0, note="284_Paris"
        )  # same id, other city: other place
    ts = gt.build_train_set(tmp_path / "train", min_images=4)
    assert sorted(ts.place_names.tolist()) == ["284_Paris", "284_Rome"]
    assert sorted(ts.place_sizes.tolist()) == [4, 5]
    for p in range(ts.num_places):
        assert set(ts.place_of_image[ts.images_of(p)]) == {p}
    assert set(ts.place_city.tolist()) == {"Rome", "Paris"}


def test_bad_training_note_is_reported(tmp_path):
    _touch(tmp_path / "train/X", 1.0, 2.0, note="nocity")
    with pytest.raises(DataError, match="placeID_City"):
        gt.build_train_set(tmp_path / "train")


def test_empty_or_missing_folder_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .jpg"):
        gt.list_images(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        gt.list_images(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "ext,fmt,mode",
    [
        (".webp", "WEBP", "RGBA"),
        (".tif", "TIFF", "RGB"),
        (".tiff", "TIFF", "L"),
        (".bmp", "BMP", "RGB"),
        (".JPG", "JPEG", "RGB"),
    ],
)
def test_webp_tiff_and_bmp_images_are_listed_checked_and_decoded(tmp_path, ext, fmt, mode):
    from PIL import Image

    from vpr.data.image_checks import image_problem
    from vpr.data.images import load_image

    path = tmp_path / "s" / format_name(10.0, 20.0, 33, "T", ext=ext)
    path.parent.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (24, 32, len(mode)), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(path, fmt)
    assert gt.list_images(tmp_path / "s") == [str(path)]
    assert image_problem(str(path), "header") is None and image_problem(str(path), "decode") is None
    img = load_image(str(path))
    assert img.mode == "RGB" and img.size == (32, 24)
    path.write_bytes(
        path.read_bytes()[: len(path.read_bytes()) // 2]
    )  # truncated: the header check sees it
    assert image_problem(str(path), "header").startswith("does not decode")
