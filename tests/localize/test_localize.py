"""Localizing new photos: position estimate, any size and EXIF orientation, folders, JSON, stored descriptors."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import eval_set
from vpr import localize as loc
from vpr.data.groundtruth import save_eval_set
from vpr.eval.extract import compute_descriptors
from vpr.io import write_json
from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES
from vpr.models.checkpoint import weights_md5
from vpr.models.network import build_model
from vpr.train.checkpoint import save_checkpoint

SIZE = [48, 64]


def _checkpoint(path, aggregator="gem", seed=0):
    torch.manual_seed(seed)
    spec = dict(
        backbone="resnet18",
        backbone_settings=BACKBONES.check("resnet18", {"pretrained": False}),
        aggregator=aggregator,
        aggregator_settings=AGGREGATORS.check(aggregator, {}),
        descriptor_dim=None,
        image_size=SIZE,
    )
    save_checkpoint(path, model=build_model(spec).state_dict(), spec=spec, epoch=0)
    return str(path)


@pytest.fixture(scope="module")
def world(tiny_city, tmp_path_factory):
    """A model, an evaluation set 'city' (ground truth + stored descriptors from that model), and its queries."""
    root = tmp_path_factory.mktemp("localize")
    model_path = _checkpoint(root / "model.pt")
    gt_root, features_root = root / "gt", root / "features"
    test_set = eval_set(tiny_city / "test")
    save_eval_set(test_set, gt_root / "city")
    model = loc.load_model_for_localize(model_path, "cpu")
    (features_root / "city").mkdir(parents=True)
    np.save(
        features_root / "city" / "database.npy",
        compute_descriptors(model, test_set.database_paths, SIZE),
    )
    write_json(
        features_root / "city" / "info.json",
        dict(
            descriptor_dim=model.descriptor_dim,
            checkpoint_epoch=0,
            weights_md5=weights_md5(model),
            image_size=SIZE,
            spec=model.spec,
        ),
    )
    return dict(
        root=root,
        model_path=model_path,
        model=model,
        gt_root=str(gt_root),
        features_root=str(features_root),
        queries=[str(p) for p in test_set.queries_paths],
        set=test_set,
    )


def _cli(world, *args, capsys):
    code = loc.main(
        [
            *args,
            "--gt-root",
            world["gt_root"],
            "--features-root",
            world["features_root"],
            "--device",
            "cpu",
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_is_the_top1_when_no_other_match_agrees():
    pos, used = loc.estimate_position([[0, 0], [100, 0], [0, 300]], [0.9, 0.8, 0.7])
    assert pos.tolist() == [0, 0] and used.tolist() == [True, False, False]


def test_estimate_is_the_similarity_weighted_mean_of_the_matches_within_25m_of_the_top1():
    pos, used = loc.estimate_position(
        [[0, 0], [20, 0], [500, 0], [0, 10]], [0.6, 0.2, 0.9, 0.2], agree_m=25
    )
    assert used.tolist() == [True, True, False, True]
    assert np.allclose(pos, [(0.6 * 0 + 0.2 * 20 + 0.2 * 0) / 1.0, (0.2 * 10) / 1.0])


def test_exif_rotated_and_resized_photo_gives_the_same_descriptor_as_the_original(world, tmp_path):
    original = Image.open(world["queries"][0]).convert("RGB")
    big = original.resize((original.width * 5, original.height * 5), Image.BICUBIC)
    big.save(tmp_path / "upright.jpg", quality=95)
    # What a phone held sideways stores: pixels turned 90 degrees, EXIF Orientation 6 says how to turn them back.
    turned = big.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.save(tmp_path / "exif_rotated.jpg", quality=95, exif=exif)
    turned.save(tmp_path / "rotated_no_exif.jpg", quality=95)
    paths = [world["queries"][0]] + [
        str(tmp_path / f) for f in ("upright.jpg", "exif_rotated.jpg", "rotated_no_exif.jpg")
    ]
    d, sizes = loc.photo_descriptors(world["model"], paths, SIZE, "cpu")
    assert sizes[2] == big.size and sizes[3] == (big.height, big.width)
    sim = d @ d[0]
    assert sim[1] > 0.999 and sim[2] > 0.999 and abs(sim[1] - sim[2]) < 1e-4
    # Ignoring the EXIF tag would feed a sideways image: far more different (here ~100x) than resampling.
    assert 1 - sim[3] > 20 * (1 - sim[2])


def test_localize_prints_matches_with_coordinates_and_the_estimate_reusing_stored_descriptors(
    world, tmp_path, capsys
):
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        world["model_path"],
        "--database",
        "city",
        "--out",
        str(tmp_path / "pics"),
        capsys=capsys,
    )
    assert code == 0, err
    assert "note:" not in out + err  # stored descriptors came from this model: no extraction
    for header in ("similarity", "lat", "lon", "UTM east", "UTM north", "estimated position:"):
        assert header in out
    pictures = list((tmp_path / "pics").glob("*_matches.jpg"))
    assert len(pictures) == 1 and Image.open(pictures[0]).width > 6 * 64


def test_localize_a_folder_of_unlabelled_photos_as_json(world, tmp_path, capsys):
    folder = tmp_path / "phone"
    (folder / "day2").mkdir(parents=True)
    shutil.copy(
        world["queries"][0], folder / "IMG_0001.jpg"
    )  # no '@' name: a photo nobody labelled
    shutil.copy(world["queries"][1], folder / "day2" / "IMG_0002.JPG")
    code, out, err = _cli(
        world,
        str(folder),
        "--model",
        world["model_path"],
        "--database",
        "city",
        "--json",
        "--top-k",
        "3",
        "--out",
        str(tmp_path / "pics"),
        capsys=capsys,
    )
    assert code == 0, err
    results = json.loads(out)
    assert [os.path.basename(r["photo"]) for r in results] == ["IMG_0001.jpg", "IMG_0002.JPG"]
    for r in results:
        assert len(r["matches"]) == 3 and r["matches"][0]["distance_to_top1_m"] == 0
        sims = [m["similarity"] for m in r["matches"]]
        assert sims == sorted(sims, reverse=True)
        e = r["estimate"]
        assert (
            e["utm_zone"] == "10S" and 37 < e["lat"] < 38.5 and -123 < e["lon"] < -122
        )  # San Francisco
        assert os.path.isfile(r["picture"])


def test_top1_coordinates_come_from_the_database_image_name(world, capsys, tmp_path):
    code, out, _ = _cli(
        world,
        world["queries"][2],
        "--model",
        world["model_path"],
        "--database",
        "city",
        "--json",
        "--no-pictures",
        capsys=capsys,
    )
    m = json.loads(out)[0]["matches"][0]
    from vpr.data.filenames import parse_name

    name = parse_name(m["image"])
    assert (m["lat"], m["lon"]) == (float(name.lat), float(name.lon))
    assert (m["utm_east"], m["utm_north"]) == (round(name.utm_east, 2), round(name.utm_north, 2))


def test_a_different_model_is_named_with_the_stored_descriptors_and_the_database_re_extracted(
    world, tmp_path, capsys
):
    other = _checkpoint(tmp_path / "avg.pt", aggregator="avg")
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        other,
        "--database",
        "city",
        "--no-pictures",
        capsys=capsys,
    )
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert (
        "features/city/database.npy" in notes[0]
        and "avg.pt" in notes[0]
        and "different model (aggregator" in notes[0]
        and "extracting the" in notes[0]
    )


def test_the_same_weights_saved_again_under_another_name_reuse_the_stored_descriptors(
    world, tmp_path, capsys
):
    again = tmp_path / "last.pt"  # as last.pt of the best epoch: other file bytes, same weights
    save_checkpoint(
        again, model=world["model"].state_dict(), spec=world["model"].spec, epoch=3, note="copy"
    )
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        str(again),
        "--database",
        "city",
        "--stored-only",
        "--no-pictures",
        capsys=capsys,
    )
    assert code == 0 and "note:" not in out + err, err


def test_same_architecture_other_weights_is_detected_and_stored_only_stops(world, tmp_path, capsys):
    other = _checkpoint(tmp_path / "seed1.pt", seed=1)
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        other,
        "--database",
        "city",
        "--stored-only",
        capsys=capsys,
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "different weights" in err
    assert "seed1.pt" in err and "--stored-only" in err


def test_a_folder_database_of_geotagged_images_works_without_stored_descriptors(
    world, tiny_city, capsys
):
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        world["model_path"],
        "--database",
        str(tiny_city / "test" / "database"),
        "--json",
        "--no-pictures",
        capsys=capsys,
    )
    assert code == 0, err
    assert "extracting the" in err  # notes go to stderr with --json, so stdout stays valid JSON
    assert len(json.loads(out)[0]["matches"]) == 5


def test_bad_inputs_give_one_line_errors(world, tmp_path, capsys):
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    code, _, err = _cli(
        world, str(junk), "--model", world["model_path"], "--database", "city", capsys=capsys
    )
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert f"{junk}" in err and "does not decode" in err and "pass photos" in err
    code, _, err = _cli(
        world,
        world["queries"][0],
        "--model",
        world["model_path"],
        "--database",
        "citty",
        capsys=capsys,
    )
    assert code == 2 and "--database citty" in err and "city" in err
    code, _, err = _cli(
        world,
        str(tmp_path / "missing"),
        "--model",
        world["model_path"],
        "--database",
        "city",
        capsys=capsys,
    )
    assert code == 2 and "no such photo or folder" in err


def _truncated(source, target, keep=0.5):
    """A JPEG cut short, as an interrupted copy leaves it: the header opens, the pixels do not decode."""
    big = Image.open(source).convert("RGB")
    big = big.resize((big.width * 4, big.height * 4), Image.BICUBIC)
    big.save(target, quality=95)
    data = open(target, "rb").read()
    open(target, "wb").write(data[: int(len(data) * keep)])
    with Image.open(target) as img:  # what the old check looked at: it passes
        assert img.size == big.size


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_a_truncated_photo_is_skipped_with_a_warning_before_the_database_is_extracted(
    world, tiny_city, tmp_path, capsys, monkeypatch
):
    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(world["queries"][0], folder / "IMG_0001.jpg")
    _truncated(world["queries"][1], folder / "IMG_0002.jpg")
    shutil.copy(world["queries"][2], folder / "IMG_0003.jpg")
    from vpr.localize import estimate

    real, before = estimate.database_descriptors, []

    def spy(*args, **kwargs):  # what was printed by the time the database is extracted
        before.append(capsys.readouterr().err)
        return real(*args, **kwargs)

    monkeypatch.setattr(estimate, "database_descriptors", spy)
    code, out, err = _cli(
        world,
        str(folder),
        "--model",
        world["model_path"],
        "--database",
        str(tiny_city / "test" / "database"),
        "--json",
        "--no-pictures",
        capsys=capsys,
    )
    assert code == 0, err
    assert (
        len(before) == 1 and "extracting the" in err
    )  # the database was extracted, after the photo check
    warned = _warnings(before[0])
    assert (
        len(warned) == 1
        and str(folder / "IMG_0002.jpg") in warned[0]
        and "does not decode" in warned[0]
    )
    assert "IMG_0001" not in warned[0] and "IMG_0003" not in warned[0] and not _warnings(err)
    assert [os.path.basename(r["photo"]) for r in json.loads(out)] == [
        "IMG_0001.jpg",
        "IMG_0003.jpg",
    ]


def test_bad_images_of_a_database_folder_are_skipped_with_one_warning_naming_them(
    world, tiny_city, tmp_path, capsys
):
    database = tmp_path / "db"
    shutil.copytree(tiny_city / "test" / "database", database)
    good = sorted(database.rglob("*.jpg"))
    shutil.copy(good[0], database / "IMG_9999.jpg")  # no '@' fields: no position
    broken = good[1].parent / ("@" + "@".join(["0000001.00", "0000002.00"] + [""] * 12) + "@.jpg")
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        world["model_path"],
        "--database",
        str(database),
        "--out",
        str(tmp_path / "pics"),
        capsys=capsys,
    )
    assert code == 0, err
    warned = _warnings(err)
    assert len(warned) == 1 and str(database) in warned[0] and "2 images skipped" in warned[0]
    assert "IMG_9999.jpg" in warned[0] and "without coordinates in the name" in warned[0]
    assert broken.name in warned[0] and "does not decode" in warned[0]
    assert (
        world["queries"][0] in out and "estimated position:" in out
    )  # the photo is still localized
    assert "IMG_9999" not in out and broken.name not in out


def test_a_database_folder_without_a_usable_image_is_one_error(world, tmp_path, capsys):
    database = tmp_path / "db"
    database.mkdir()
    shutil.copy(world["queries"][0], database / "IMG_0001.jpg")
    code, out, err = _cli(
        world,
        world["queries"][0],
        "--model",
        world["model_path"],
        "--database",
        str(database),
        capsys=capsys,
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: --database ")
    assert "IMG_0001.jpg" in err and "without coordinates in the name" in err


def test_when_no_photo_is_usable_the_run_stops_with_one_error_line(
    world, tmp_path, capsys, monkeypatch
):
    _truncated(world["queries"][0], tmp_path / "cut.jpg")
    (tmp_path / "notes.png").write_text("not an image")
    from vpr.localize import estimate

    monkeypatch.setattr(
        estimate, "database_descriptors", lambda *a, **k: pytest.fail("database read")
    )
    code, out, err = _cli(
        world,
        str(tmp_path / "cut.jpg"),
        str(tmp_path / "notes.png"),
        str(tmp_path / "gone.jpg"),
        "--model",
        world["model_path"],
        "--database",
        "city",
        capsys=capsys,
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ")
    for name in ("cut.jpg", "notes.png", "gone.jpg"):
        assert name in err
