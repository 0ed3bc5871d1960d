"""build_gt layouts: course / VG benchmark / original GSV-Cities, query lists without coordinates, bad files,
known sizes, night subsets; then ground truth -> extract -> evaluate on miniature copies of each layout."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest

from tests.helpers import course_tree, gsv_cities_tree, vg_tree
from vpr.config.data import check_night
from vpr.data import groundtruth as gt
from vpr.data import image_checks, layouts
from vpr.errors import DataError, DataWarning

BRIGHTNESS = dict(name="tokyo_night", rule="brightness", max_brightness=80.0, list=None)


@pytest.fixture(scope="module")
def trees(tiny_city, tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return dict(
        course=course_tree(tiny_city, root / "course"),
        gsv=gsv_cities_tree(tiny_city, root / "gsv_cities"),
        vg=vg_tree(tiny_city, root / "vg"),
        city=tiny_city,
    )


def _copy_set(src, dst):
    shutil.copytree(src, dst)
    return dst


def _messages(record):
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def test_original_gsv_cities_layout_is_indexed_in_place_with_utm_from_lat_lon(trees):
    ts, info = layouts.build_train_index(str(trees["gsv"]), min_images=4)
    ref = gt.build_train_set(trees["city"] / "train", min_images=4)  # the same city, '@' names
    assert info["layout"] == "gsv-cities"
    assert ts.num_places == ref.num_places and len(ts.paths) == len(ref.paths)
    assert sorted(ts.place_names.tolist()) == sorted(
        ref.place_names.tolist()
    )  # placeID_City, as GSV-XS notes
    assert all(
        p.startswith(str(trees["gsv"] / "Images")) for p in ts.paths
    )  # indexed in place, not copied
    # UTM from the CSV's lat/lon (5 decimals) agrees with the UTM of the '@' names to about a metre
    assert np.abs(np.sort(ts.utm, axis=0) - np.sort(ref.utm, axis=0)).max() < 1.5


def test_gsv_cities_image_missing_from_disk_is_reported_by_name(trees, tmp_path):
    root = _copy_set(trees["gsv"], tmp_path / "gsv")
    victim = sorted((root / "Images").rglob("*.jpg"))[0]
    victim.unlink()
    with pytest.warns(
        DataWarning, match=f"1 listed in .*csv but missing from Images/.*: {victim.name}"
    ):
        ts, _ = layouts.build_train_index(str(root), min_images=4)
    assert str(victim) not in ts.paths
    with pytest.raises(DataError, match=f"1 bad images.*{victim.name}.*gt.strict: false"):
        layouts.build_train_index(str(root), min_images=4, strict=True)


def test_course_layout_eval_sets_and_gsv_xs_training_cities(trees):
    ts, info = layouts.build_train_index(str(trees["course"] / "gsv_xs/train"), min_images=4)
    assert info["layout"] == "@ names" and ts.num_places > 0
    s, _ = layouts.build_eval_index(str(trees["course"] / "sf_xs/test"), 25.0)
    assert s.num_queries == 24 and s.has_coordinates and s.positives.counts.sum() > 0


def test_vg_benchmark_layout_and_a_hint_when_the_folder_is_one_level_off(trees):
    s, _ = layouts.build_eval_index(str(trees["vg"] / "images/test"), 25.0)
    assert s.num_queries == 24
    with pytest.raises(
        DataError,
        match="expected database/ and queries/ folders here; folders that have both: "
        ".*pitts/images/test, .*pitts/images/val",
    ):
        layouts.build_eval_index(str(trees["vg"]), 25.0)


def test_night_subset_by_brightness_and_by_list_reports_what_each_selects(
    trees, tmp_path, monkeypatch
):
    # the generated test set marks night in the note field: the brightness rule finds those, plus a dark dusk one
    s, info = layouts.build_eval_index(str(trees["city"] / "test"), night=BRIGHTNESS)
    assert info["night_rule"] == "brightness" and info["night_name"] == "tokyo_night"
    assert info["night_counts"] == dict(note=9, brightness=11) and int(s.queries_night.sum()) == 11
    by_note = np.array([os.path.basename(p).endswith("@night@.jpg") for p in s.queries_paths])
    assert (s.queries_night & by_note).sum() == 9
    # Tokyo-XS names carry no note: only a rule can mark its night queries
    queries = trees["course"] / "tokyo_xs/test/queries"
    s, info = layouts.build_eval_index(str(queries.parent), night=BRIGHTNESS)
    assert info["night_counts"] == dict(note=0, brightness=11)
    # an explicit list: a file name, a pano_id (Tokyo-XS keeps the original 00685.jpg there), names matching nothing
    names = sorted(os.listdir(queries))[:3]
    pano = names[2].split("@")[7]
    monkeypatch.chdir(tmp_path)
    os.makedirs("data/lists")
    with open("data/lists/night.txt", "w") as fh:
        fh.write(f"# night queries\n{names[0]}\n./{names[1]}\n{names[1]}\n{pano}\n\n00685.jpg\n")
    spec = check_night("data.night.t", dict(rule="list", list="data/lists/night.txt"))
    with pytest.warns(DataWarning, match="2 of 5 names match no query .*(00685.jpg|./)"):
        s, info = layouts.build_eval_index(str(queries.parent), night=spec)
    assert (
        info["night_counts"] == dict(note=0, list=3, brightness=11)
        and int(s.queries_night.sum()) == 3
    )


@pytest.mark.parametrize(
    "spec,message",
    [
        (dict(rule="moon"), "data.night.t.rule: 'moon' is not one of: note, brightness, list"),
        (dict(rule="list"), "data.night.t.list: rule 'list' needs a list file"),
        (
            dict(rule="list", list="/etc/night.txt"),
            "data.night.t.list: must be a file under data/lists/",
        ),
        (dict(max_brightness=300), "data.night.t.max_brightness: must be < 255, got 300"),
        (dict(name="tokyo night"), "data.night.t.name: must be letters, digits and '_'"),
        (
            dict(threshold=3),
            "data.night.t.threshold: unknown key 'threshold' (allowed: name, rule, max_brightness, list)",
        ),
    ],
)
def test_bad_night_settings_give_one_line(spec, message):
    from vpr.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_night("data.night.t", spec)


def test_images_without_coordinates_or_truncated_are_skipped_with_names_or_fail_when_strict(
    trees, tmp_path
):
    root = _copy_set(trees["course"] / "sf_xs/test", tmp_path / "test")
    shutil.copy(next((root / "database").iterdir()), root / "database" / "IMG_0001.jpg")
    broken = sorted((root / "queries").iterdir())[3]
    broken.write_bytes(broken.read_bytes()[:300])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        s, info = layouts.build_eval_index(str(root))
    (msg,) = _messages(record)
    assert (
        "2 images skipped: 1 without coordinates in the name: database/IMG_0001.jpg; "
        f"1 does not decode: queries/{broken.name}; set gt.strict: true to fail instead" in msg
    )
    assert s.num_database == 156 and s.num_queries == 23 and info["skipped_images"] == 2
    with pytest.raises(DataError) as err:
        layouts.build_eval_index(str(root), strict=True)
    assert (
        "2 bad images" in str(err.value)
        and "IMG_0001.jpg" in str(err.value)
        and "\n" not in str(err.value)
    )


def test_image_checks_trade_speed_for_depth(tmp_path, tiny_city):
    good = next((tiny_city / "test/queries").iterdir())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:-50])
    (tmp_path / "text.jpg").write_text("<html>quota exceeded</html>")
    assert image_checks.image_problem(str(good), "header") is None
    assert image_checks.image_problem(str(good), "decode") is None
    assert "truncated" in image_checks.image_problem(str(cut), "header")
    assert image_checks.image_problem(str(cut), "decode").startswith("does not decode")
    assert image_checks.image_problem(str(cut), "none") is None
    assert image_checks.image_problem(str(tmp_path / "text.jpg"), "header").startswith(
        "does not decode"
    )


def test_known_set_sizes_are_checked_as_warnings(trees):
    with pytest.warns(
        DataWarning, match=r"156 database / 24 query images, expected 27,191 / 1,000 for sf_xs/test"
    ):
        layouts.build_eval_index(str(trees["course"] / "sf_xs/test"), known_as="sf_xs/test")


def test_query_list_without_coordinates_gives_predictions_but_no_recall(trees, tmp_path):
    root = _copy_set(trees["course"] / "sf_xs/test", tmp_path / "photos")
    for i, q in enumerate(sorted((root / "queries").iterdir())):
        q.rename(root / "queries" / f"IMG_{i:04d}.jpg")
    with pytest.warns(
        DataWarning, match="none of the 24 query names carries coordinates: recall is skipped"
    ):
        s, _ = layouts.build_eval_index(str(root), unlabelled_queries=True)
    assert not s.has_coordinates and s.num_queries == 24 and s.positives.counts.sum() == 0
    with pytest.raises(
        DataError, match="none of the 24 query names .*24 without coordinates in the name"
    ):
        layouts.build_eval_index(str(root))  # not asked for: a clear error, not a silent skip
    gt.save_eval_set(s, tmp_path / "gt")
    assert gt.load_info(tmp_path / "gt")["queries_have_coordinates"] is False


PATTERN = "@UTM_east@UTM_north@zone@band@lat@lon@pano_id@tile@heading@pitch@roll@height@timestamp@note@.jpg"


def _drop_last_field(path):
    """Rename an '@' image to 13 fields (its coordinates stay valid); returns the new path."""
    tokens = path.name.split("@")
    return path.rename(path.with_name("@".join(tokens[:-3] + tokens[-2:])))


def test_names_with_a_wrong_field_count_are_reported_as_such_not_as_without_coordinates(
    trees, tmp_path
):
    root = _copy_set(trees["course"] / "sf_xs/test", tmp_path / "test")
    short = _drop_last_field(sorted((root / "database").iterdir())[0])
    longer = sorted((root / "queries").iterdir())[0]
    longer = longer.rename(longer.with_name(longer.name[: -len(".jpg")] + "extra@.jpg"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        s, info = layouts.build_eval_index(str(root))
    (msg,) = _messages(record)
    assert f"1 with 13 '@' fields instead of 14: database/{short.name}" in msg
    assert f"1 with 15 '@' fields instead of 14: queries/{longer.name}" in msg
    assert "without coordinates" not in msg and f"expected names like {PATTERN}" in msg
    assert (
        s.num_database == 155
        and s.num_queries == 23
        and s.has_coordinates
        and info["skipped_images"] == 2
    )


def test_query_set_where_no_name_parses_fails_in_one_line_unless_unlabelled_queries_are_allowed(
    trees, tmp_path
):
    root = _copy_set(trees["course"] / "sf_xs/test", tmp_path / "test")
    for q in sorted((root / "queries").iterdir()):
        _drop_last_field(q)
    with pytest.raises(DataError) as err:
        layouts.build_eval_index(str(root))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(
        f"{root}/queries: none of the 24 query names carries coordinates"
    )
    assert (
        "24 with 13 '@' fields instead of 14" in msg
        and PATTERN in msg
        and "gt.unlabelled_queries" in msg
    )
    with pytest.warns(
        DataWarning,
        match="none of the 24 query names carries coordinates: recall is skipped.*"
        "24 with 13 '@' fields instead of 14",
    ):
        s, _ = layouts.build_eval_index(str(root), unlabelled_queries=True)
    assert not s.has_coordinates and s.num_queries == 24


# --------------------------------------------------------- build_gt -> extract -> evaluate, per layout
def _extract_and_evaluate(sets: dict, tmp_path):
    """Save each set's ground truth, extract descriptors with an (untrained) network, evaluate, tabulate."""
    import torch

    from vpr.config import load_params
    from vpr.eval.evaluate import evaluate_features, recall_table
    from vpr.eval.extract import compute_descriptors
    from vpr.models.network import build_model, model_spec

    torch.manual_seed(0)
    model = build_model(model_spec(load_params("params.yaml"), (48, 64)))
    metrics, files = {}, {}
    for name, (eval_set, info) in sets.items():
        gt.save_eval_set(eval_set, tmp_path / "gt" / name, **info)
        os.makedirs(tmp_path / "features" / name)
        for part, paths in (
            ("database", eval_set.database_paths),
            ("queries", eval_set.queries_paths),
        ):
            np.save(
                tmp_path / "features" / name / f"{part}.npy",
                compute_descriptors(model, paths, (48, 64), 32),
            )
        metrics[name] = evaluate_features(
            tmp_path / "features" / name, tmp_path / "gt" / name, (1, 5, 10, 20)
        ).metrics
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(metrics[name]))
    return metrics, recall_table(files, (1, 5, 10, 20))


def test_course_layout_end_to_end_gives_the_course_rows(trees, tmp_path):
    course = trees["course"]
    train, _ = layouts.build_train_index(str(course / "gsv_xs/train"))
    gt.save_train_set(train, tmp_path / "gt/train")
    sets = {
        "sf_xs_test": layouts.build_eval_index(str(course / "sf_xs/test")),
        "tokyo_xs_test": layouts.build_eval_index(str(course / "tokyo_xs/test"), night=BRIGHTNESS),
    }
    metrics, table = _extract_and_evaluate(sets, tmp_path)
    assert metrics["tokyo_xs_test"]["night"]["num_queries"] == 11
    assert metrics["tokyo_xs_test"]["night"]["name"] == "tokyo_night"
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == ["sf_xs_test", "tokyo_xs_test", "tokyo_night"]
    for m in metrics.values():
        assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= m["R@20"] <= 100


def test_gsv_cities_and_vg_layouts_end_to_end_with_a_query_list_without_coordinates(
    trees, tmp_path
):
    train, info = layouts.build_train_index(str(trees["gsv"]))
    gt.save_train_set(train, tmp_path / "gt/train", **info)
    assert gt.load_train_set(tmp_path / "gt/train").num_places == train.num_places
    photos = _copy_set(trees["vg"] / "images/test", tmp_path / "photos")
    for i, q in enumerate(sorted((photos / "queries").iterdir())):
        q.rename(photos / "queries" / f"IMG_{i:04d}.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        sets = {
            "pitts_test": layouts.build_eval_index(str(trees["vg"] / "images/test")),
            "my_photos": layouts.build_eval_index(str(photos), unlabelled_queries=True),
        }
    metrics, table = _extract_and_evaluate(sets, tmp_path)
    assert (
        "R@1" in metrics["pitts_test"] and "night" in metrics["pitts_test"]
    )  # note field marks the night
    assert metrics["my_photos"] == dict(
        num_queries=24,
        num_database=156,
        queries_have_coordinates=False,
        recall_skipped="the queries carry no coordinates",
    )
    row = next(line for line in table.splitlines() if "my_photos" in line and line.startswith("|"))
    assert [c.strip() for c in row.strip("|").split("|")] == ["my_photos (no coordinates)"] + [
        "n/a"
    ] * 4
    assert "my_photos: its 24 queries carry no coordinates, so recall is not computed" in table
    from vpr.viz.visualize import visualize_set  # predictions still drawn, in grey frames

    drawn = visualize_set(
        tmp_path / "features/my_photos",
        tmp_path / "gt/my_photos",
        tmp_path / "pictures",
        tmp_path / "curve.csv",
        num_queries=2,
        top_k=3,
        curve_max_n=5,
    )
    assert (
        drawn == 2 and len(list((tmp_path / "pictures").glob("query_?????.jpg"))) == 2
    )  # one name per query
    assert (tmp_path / "curve.csv").read_text().strip() == "N,recall"
