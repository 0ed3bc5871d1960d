"""Real photos come in every size, shape and kind of file: no image size can crash a batch, in extraction,
training-time validation or localize, under any preparation policy, draft scale or number of loader workers.

A batch is formed from the output size the header's size gives (vpr.eval.prepare.size_batches); a JPEG is
decoded at a reduced draft scale whose sides round up, so the prepared size must come from the header's size
too, never from the reduced image (that was a crash: [3, 320, 479] and [3, 320, 480] in one batch)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vpr.data.datasets import PreparedImages
from vpr.data.filenames import format_name
from vpr.data.groundtruth import EvalSet, Positives
from vpr.data.images import DRAFT_GAP
from vpr.eval.extract import compute_descriptors
from vpr.eval.prepare import POLICIES, SIDES, ImagePrep, oriented_size, size_batches
from vpr.eval.validate import evaluate_model
from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES
from vpr.models.network import build_model
from vpr.train.checkpoint import save_checkpoint

# extract.image_size values users set: the default, the training size of the real profile, and the
# GSV-Cities / CosPlace-style test sizes
IMAGE_SIZES = [(72, 96), (160, 160), (240, 320), (320, 320)]
# sizes of real photos and ones whose draft-reduced sides round differently from the header's
ODD_SIZES = [
    (479, 320),
    (481, 321),
    (1001, 667),
    (960, 641),
    (333, 500),
    (640, 427),
    (1023, 767),
    (1920, 1280),
    (100, 75),
    (400, 300),
    (420, 560),
    (97, 1000),
    (2000, 37),
]


def _photo(rng, width, height):
    """Smooth random colours (JPEG-friendly) of the given size."""
    small = rng.integers(0, 255, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def _odd_files(folder, rng) -> list[str]:
    """JPEGs of odd sizes plus every kind of file a photo folder holds."""
    paths = []
    for w, h in ODD_SIZES:
        paths.append(str(folder / f"{w}x{h}.jpg"))
        _photo(rng, w, h).save(paths[-1], quality=85)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 4000 x 3000, shown 3000 x 4000 (portrait)
    paths.append(str(folder / "phone_exif6.jpg"))
    _photo(rng, 4000, 3000).save(paths[-1], quality=80, exif=exif)
    paths.append(str(folder / "alpha.png"))
    _photo(rng, 455, 301).convert("RGBA").save(paths[-1])
    paths.append(str(folder / "gray.jpg"))
    _photo(rng, 641, 479).convert("L").save(paths[-1])
    paths.append(str(folder / "gray.png"))
    _photo(rng, 333, 251).convert("L").save(paths[-1])
    paths.append(str(folder / "cmyk.jpg"))
    _photo(rng, 803, 535).convert("CMYK").save(paths[-1], quality=90)
    paths.append(str(folder / "progressive.jpg"))
    _photo(rng, 1001, 667).save(paths[-1], quality=80, progressive=True)
    return paths


@pytest.fixture(scope="module")
def odd_photos(tmp_path_factory):
    return _odd_files(tmp_path_factory.mktemp("odd"), np.random.default_rng(0))


def _draft_reduction(path, prep) -> int:
    """The power-of-two reduction the JPEG decoder applies for ``prep`` (1 = full size)."""
    with Image.open(path) as img:
        if img.format != "JPEG":
            return 1
        full = img.size
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        h, w = prep.resized(*oriented_size(path))
        box = (h * DRAFT_GAP, w * DRAFT_GAP) if turned else (w * DRAFT_GAP, h * DRAFT_GAP)
        img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", box)
        return 2 ** round(np.log2(full[0] / img.size[0]))  # sides round up: 57 px at 1/8 -> 8 px


def test_every_prepared_image_has_the_size_its_batch_was_formed_for(tmp_path):
    """Random sizes from 40 to 2600 px, every policy, side and image size: the prepared tensor has exactly the
    size size_batches grouped it by, at every draft scale (1, 1/2, 1/4, 1/8)."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(60):
        w, h = (int(x) for x in rng.integers(40, 2600, 2))
        paths.append(str(tmp_path / f"{i}_{w}x{h}.jpg"))
        _photo(rng, w, h).save(paths[-1], quality=80)
    reductions = set()
    for size in IMAGE_SIZES:
        for policy in POLICIES:
            for side in SIDES:
                prep = ImagePrep(size, policy, side)
                images = PreparedImages(paths, prep)
                for i, p in enumerate(paths):
                    reductions.add(_draft_reduction(p, prep))
                    assert tuple(images[i][0].shape[1:]) == prep.output(*oriented_size(p)), (
                        p,
                        size,
                        policy,
                        side,
                    )
    assert reductions == {1, 2, 4, 8}


def _tiny_model(size=(48, 64)):
    torch.manual_seed(0)
    spec = dict(
        backbone="resnet18",
        backbone_settings=BACKBONES.check("resnet18", {"pretrained": False}),
        aggregator="gem",
        aggregator_settings=AGGREGATORS.check("gem", {}),
        descriptor_dim=None,
        image_size=list(size),
    )
    return build_model(spec).eval(), spec


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("policy, side", [(p, s) for p in POLICIES for s in SIDES])
def test_extraction_batches_photos_of_any_size_and_kind(odd_photos, policy, side, workers):
    """Extraction in batches (with 0, 1 or 2 loader workers) equals extraction one image at a time, for photos
    of odd sizes, EXIF rotation, alpha, grey, CMYK and progressive files, at an image size that draft-decodes
    them at every scale."""
    model, _ = _tiny_model()
    prep = ImagePrep((72, 96), policy, side)
    assert {_draft_reduction(p, prep) for p in odd_photos} == {1, 2, 4, 8}
    if policy == "keep_aspect":
        assert len({prep.output(*oriented_size(p)) for p in odd_photos}) > 5  # many batch shapes
    batched = compute_descriptors(model, odd_photos, prep, batch_size=8, num_workers=workers)
    single = compute_descriptors(model, odd_photos, prep, batch_size=1)
    assert batched.shape == (len(odd_photos), model.descriptor_dim)
    assert np.allclose(batched, single, atol=1e-4)


def _named_copies(photos, folder):
    """The photos under '@' names, 10 m apart along a street (for an evaluation set or a localize database)."""
    folder.mkdir()
    out = []
    for i, p in enumerate(photos):
        ext = ".png" if p.endswith(".png") else ".jpg"
        name = format_name(500000.0 + 10 * i, 5000000.0, 31, "U", note=f"photo{i}", ext=ext)
        (folder / name).write_bytes(open(p, "rb").read())
        out.append(str(folder / name))
    return sorted(out)


@pytest.mark.parametrize("policy, side", [(p, s) for p in POLICIES for s in SIDES])
def test_validation_and_localize_take_photos_of_any_size(
    odd_photos, tmp_path, policy, side, capsys
):
    """The training loop's validation and localize run on the same odd photos, under every policy."""
    from vpr import localize as loc

    model, spec = _tiny_model()
    prep = ImagePrep((72, 96), policy, side)
    database = np.array(_named_copies(odd_photos, tmp_path / "database"))
    utm = np.c_[500000.0 + 10 * np.arange(len(database)), np.full(len(database), 5000000.0)]
    queries = database[::3]
    val = EvalSet(
        database,
        queries,
        utm,
        utm[::3],
        Positives.from_lists([[i] for i in range(0, len(database), 3)]),
        np.zeros(len(queries), bool),
    )
    recalls = evaluate_model(model, val, prep, ns=(1, 5), batch_size=8, num_workers=2)
    assert set(recalls) == {"R@1", "R@5"}

    save_checkpoint(
        tmp_path / "model.pt", model=model.state_dict(), spec=spec, epoch=0, prepare=prep.to_dict()
    )
    code = loc.main(
        list(odd_photos)
        + [
            "--model",
            str(tmp_path / "model.pt"),
            "--database",
            str(tmp_path / "database"),
            "--json",
            "--no-pictures",
            "--top-k",
            "3",
            "--device",
            "cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    results = json.loads(out)
    assert [r["photo"] for r in results] == list(odd_photos)
    portrait = next(r for r in results if r["photo"].endswith("phone_exif6.jpg"))
    assert (portrait["width"], portrait["height"]) == (3000, 4000)


def test_size_batches_group_exactly_the_prepared_sizes(odd_photos):
    prep = ImagePrep((72, 96), "keep_aspect", "shorter")
    images = PreparedImages(odd_photos, prep)
    for batch in size_batches(odd_photos, prep, batch_size=4):
        assert len({tuple(images[i][0].shape) for i in batch}) == 1
