"""One image-preparation policy (extract.resize) for extraction, validation and localize: geometry, batching by
size, and localize agreeing with evaluate on photos of mixed aspect ratio under every policy."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import eval_set
from vpr import localize as loc
from vpr.data.groundtruth import save_eval_set
from vpr.eval.evaluate import evaluate_features
from vpr.eval.extract import compute_descriptors, describe, save_features
from vpr.eval.prepare import POLICIES, ImagePrep, oriented_size, size_batches
from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES
from vpr.models.checkpoint import weights_md5
from vpr.models.network import build_model
from vpr.train.checkpoint import save_checkpoint

SIZE = (48, 64)


def _banded(width, height):
    """A blue photo with a red horizontal band of a third of its height across the middle."""
    img = Image.new("RGB", (width, height), (0, 0, 255))
    img.paste((255, 0, 0), (0, height // 3, width, 2 * height // 3))
    return img


def _red_rows(tensor):
    return [y for y in range(tensor.shape[1]) if tensor[0, y, tensor.shape[2] // 2] > 200]


def test_stretch_gives_the_size_whatever_the_shape():
    out = ImagePrep(SIZE, "stretch")(_banded(300, 400))
    assert tuple(out.shape) == (3, *SIZE) and out.dtype == torch.uint8


def test_keep_aspect_scales_the_shorter_or_the_longer_side_without_distortion():
    portrait = _banded(300, 400)
    shorter = ImagePrep(SIZE, "keep_aspect", "shorter")(portrait)
    assert tuple(shorter.shape[1:]) == (64, 48)  # shorter side (300 px) -> 48, aspect kept
    longer = ImagePrep(SIZE, "keep_aspect", "longer")(portrait)
    assert tuple(longer.shape[1:]) == (64, 48)  # longer side (400 px) -> 64: the same here
    wide = ImagePrep(SIZE, "keep_aspect", "longer")(_banded(320, 180))
    assert tuple(wide.shape[1:]) == (36, 64)  # a 16:9 photo keeps 16:9
    assert tuple(ImagePrep(SIZE, "keep_aspect", "shorter")(_banded(320, 180)).shape[1:]) == (48, 85)
    assert abs(len(_red_rows(shorter)) - 64 / 3) <= 2


def test_cover_crop_fills_the_size_without_stretching_a_portrait_photo():
    out = ImagePrep(SIZE, "cover_crop")(_banded(300, 400))
    assert tuple(out.shape[1:]) == SIZE
    # scaled by 64/300, the 133 px band becomes ~28 px tall in the centre, not stretched over 48 px
    rows = _red_rows(out)
    assert 25 <= len(rows) <= 31 and abs(np.mean(rows) - SIZE[0] / 2) < 2


def test_unknown_policy_is_a_one_line_config_error():
    from vpr.errors import ConfigError

    with pytest.raises(ConfigError, match="extract.resize: 'squash' is not one of"):
        ImagePrep(SIZE, "squash")


def test_batches_never_mix_output_sizes_and_cover_every_image(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(64, 48), (48, 64), (64, 48), (64, 36), (48, 64), (64, 48)]):
        paths.append(str(tmp_path / f"{i}.jpg"))
        _banded(w, h).save(paths[-1])
    prep = ImagePrep(SIZE, "keep_aspect")
    batches = size_batches(paths, prep, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) <= 2 and len({prep.output(*oriented_size(paths[i])) for i in b}) == 1
    assert len(size_batches(paths, ImagePrep(SIZE, "stretch"), 4)) == 2  # one size: plain chunks


def test_batched_keep_aspect_descriptors_equal_one_image_at_a_time(tiny_city):
    torch.manual_seed(0)
    model = build_model(_spec())
    paths = eval_set(tiny_city / "test").queries_paths[:12]
    assert len({oriented_size(p) for p in paths}) > 1  # the miniature's queries have several shapes
    prep = ImagePrep(SIZE, "keep_aspect")
    batched = compute_descriptors(model, paths, prep, batch_size=8)
    single = compute_descriptors(model, paths, prep, batch_size=1)
    assert np.allclose(batched, single, atol=1e-5)


def _spec():
    return dict(
        backbone="resnet18",
        backbone_settings=BACKBONES.check("resnet18", {"pretrained": False}),
        aggregator="gem",
        aggregator_settings=AGGREGATORS.check("gem", {}),
        descriptor_dim=None,
        image_size=list(SIZE),
    )


@pytest.mark.parametrize(
    "policy, query_method",
    [(p, "single") for p in POLICIES]
    + [("keep_aspect", m) for m in ("central_crop", "five_crops", "nearest_crop", "maj_voting")],
)
def test_localize_ranks_every_query_exactly_as_evaluate_does(
    policy, query_method, tiny_city, tmp_path, capsys
):
    """The miniature test set's queries are photos of several aspect ratios (4:3, 3:4, 16:9, 1:1). Extract and
    evaluate them as the pipeline does, then localize the same files: same top-1 and same ranking, for every
    image-preparation policy and query method."""
    torch.manual_seed(0)
    spec = _spec()
    model = build_model(spec)
    prep = ImagePrep(SIZE, policy)
    save_checkpoint(
        tmp_path / "model.pt", model=model.state_dict(), spec=spec, epoch=0, prepare=prep.to_dict()
    )
    test_set = eval_set(tiny_city / "test")
    assert len({oriented_size(p)[1] / oriented_size(p)[0] for p in test_set.queries_paths}) >= 3
    save_eval_set(test_set, tmp_path / "gt" / "city")
    parts = describe(
        [(model, 1.0)],
        {"database": test_set.database_paths, "queries": test_set.queries_paths},
        prep,
        batch_size=16,
        query_method=query_method,
    )
    save_features(
        tmp_path / "features" / "city",
        parts,
        "float16",
        dict(
            descriptor_dim=model.descriptor_dim,
            checkpoint_epoch=0,
            weights_md5=weights_md5(model),
            image_size=list(SIZE),
            prepare=prep.to_dict(),
            spec=spec,
            query_method=query_method,
            majority_weight=0.01,
        ),
    )
    top_k = 10
    evaluated = evaluate_features(
        tmp_path / "features" / "city", tmp_path / "gt" / "city", [1, 5, top_k]
    ).queries

    code = loc.main(
        [str(p) for p in test_set.queries_paths]
        + [
            "--model",
            str(tmp_path / "model.pt"),
            "--database",
            "city",
            "--json",
            "--no-pictures",
            "--stored-only",
            "--top-k",
            str(top_k),
            "--gt-root",
            str(tmp_path / "gt"),
            "--features-root",
            str(tmp_path / "features"),
            "--device",
            "cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    index = {str(p): i for i, p in enumerate(test_set.database_paths)}
    localized = [[index[m["image"]] for m in r["matches"]] for r in json.loads(out)]
    assert len(localized) == test_set.num_queries
    for q, (row, ranking) in enumerate(zip(evaluated, localized)):
        assert ranking == row["top"][:top_k], (
            f"query {q} ({row['name']}) under {policy}, {query_method}"
        )


@pytest.mark.parametrize("policy", POLICIES)
def test_extraction_inputs_are_pillows_pixels_prepared_by_the_policy(policy, tmp_path, tiny_city):
    """Extraction decodes plain JPEGs by libjpeg-turbo (load_rgb) and prepares the tensor: the same input as
    preparing Pillow's image, at every draft scale and for every kind of file."""
    from vpr.data.datasets import PreparedImages
    from vpr.data.images import load_image

    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    photo.save(tmp_path / "plain.jpg", quality=90)
    photo.resize((300, 400)).save(tmp_path / "portrait.jpg", quality=90)
    photo.save(tmp_path / "progressive.jpg", quality=80, progressive=True)
    photo.convert("L").save(tmp_path / "gray.jpg")
    photo.save(tmp_path / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    paths = sorted(str(p) for p in tmp_path.iterdir()) + [
        str(p) for p in sorted(tiny_city.rglob("*.jpg"))[:6]
    ]
    for size in (SIZE, (96, 128), None):
        prep = ImagePrep(size, policy)
        images = PreparedImages(paths, prep)
        for i, path in enumerate(paths):
            want = prep(load_image(path, prep.resized if size else None), oriented_size(path))
            got = images[i][0]
            assert got.shape == want.shape and torch.equal(got, want), (path, size)
