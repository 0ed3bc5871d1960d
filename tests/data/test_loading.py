"""The training data path: uint8 batches from persistent workers, normalised (and optionally augmented) on the
device, augmentation seeded per image, decoding at the training size; global batches sharded across ranks."""

import numpy as np
import pytest
import torch
from PIL import Image

from vpr.data.datasets import PlaceImages
from vpr.data.groundtruth import build_train_set
from vpr.data.images import DRAFT_GAP, load_image
from vpr.data.loading import PlaceBatches
from vpr.data.samplers import PlaceBatchSampler
from vpr.data.transforms import train_transform

SIZE = (48, 64)
AUGMENT = [
    {"name": "randaugment", "num_ops": 2},
    {"name": "synthetic_night", "p": 0.5},
    {"name": "random_erasing", "variant": "soft"},
]


@pytest.fixture(scope="module")
def train_set(tiny_city):
    return build_train_set(tiny_city / "train")


def _batches(
    train_set, augment=(), workers=0, rank=0, world=1, augment_on="workers", epoch=1, count=3
):
    sampler = PlaceBatchSampler(
        train_set.place_offsets, train_set.place_images, 4, 2, seed=7, batches_per_epoch=count
    )
    source = PlaceBatches(
        train_set,
        sampler,
        list(augment),
        SIZE,
        [0.5, 0.5, 0.5],
        [0.25, 0.25, 0.25],
        seed=7,
        num_workers=workers,
        augment_on=augment_on,
        rank=rank,
        world=world,
    )
    return list(source(epoch)), sampler


def test_without_augmentation_batches_equal_the_per_image_float_pipeline(train_set):
    batches, sampler = _batches(train_set)
    sampler.set_epoch(1)
    reference = PlaceImages(
        train_set.paths,
        train_set.place_of_image,
        train_transform([], SIZE, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
    )
    for batch, indices in zip(batches, sampler):
        assert batch["images"].dtype == torch.float32 and batch["images"].shape == (8, 3, *SIZE)
        assert torch.equal(batch["images"], torch.stack([reference[i][0] for i in indices]))
        assert torch.equal(batch["labels"], torch.as_tensor(train_set.place_of_image[indices]))


def test_augmented_batches_do_not_depend_on_workers_nor_where_augmentation_runs(train_set):
    in_main, _ = _batches(train_set, AUGMENT, workers=0)
    in_worker, _ = _batches(train_set, AUGMENT, workers=1)
    on_device, _ = _batches(train_set, AUGMENT, augment_on="device")  # the CPU is the device here
    plain, _ = _batches(train_set)
    tensor_only = AUGMENT[
        1:
    ]  # no Pillow implementation: the very same kernels in workers and on the device
    for a, b, c, d, e, f in zip(
        in_main,
        in_worker,
        on_device,
        plain,
        _batches(train_set, tensor_only)[0],
        _batches(train_set, tensor_only, augment_on="device")[0],
    ):
        assert torch.equal(a["images"], b["images"]) and torch.equal(e["images"], f["images"])
        # RandAugment runs on the PIL image in workers, on the tensor on the device: the same random draws,
        # pixels equal up to the two libraries' rounding (in levels of 0..255: std 0.25 here)
        levels = (a["images"] - c["images"]).abs() * 0.25 * 255
        assert levels.mean() < 1 and (levels > 2.5).float().mean() < 0.05
        assert not torch.equal(a["images"], d["images"])
    again, _ = _batches(train_set, AUGMENT, epoch=1)
    other_epoch, _ = _batches(train_set, AUGMENT, epoch=2)
    assert torch.equal(again[0]["images"], in_main[0]["images"])
    assert not torch.equal(other_epoch[0]["images"], in_main[0]["images"])


def test_loading_leaves_the_global_random_state_alone(train_set):
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    _batches(train_set, AUGMENT)
    assert torch.equal(torch.rand(4), expected)


def test_ranks_build_disjoint_shares_of_the_same_global_batch(train_set):
    whole, _ = _batches(train_set, AUGMENT)
    first, _ = _batches(train_set, AUGMENT, rank=0, world=2)
    second, _ = _batches(train_set, AUGMENT, rank=1, world=2)
    for w, a, b in zip(whole, first, second):
        assert torch.equal(
            torch.cat([a["images"], b["images"]]), w["images"]
        )  # same pixels, same augmentation
        assert torch.equal(a["labels"], w["labels"]) and torch.equal(
            b["labels"], w["labels"]
        )  # global labels


def test_large_jpegs_are_decoded_at_the_training_size(tmp_path):
    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
    assert load_image(str(path)).size == (640, 480)
    assert DRAFT_GAP == 2  # decoded at a power-of-two scale that stays >= twice the size asked for
    assert load_image(str(path), draft_size=(48, 64)).size == (
        160,
        120,
    )  # 1/4 scale: still >= 96 x 128
    assert load_image(str(path), draft_size=(96, 128)).size == (320, 240)  # 1/2
    assert load_image(str(path), draft_size=(240, 320)).size == (
        640,
        480,
    )  # no power of two fits: full size


def _upscaled_copy(tiny_city, dest, size_of=lambda k: (160, 120)):
    """The tiny city's training images re-saved larger (PIL size (W, H) per image number k)."""
    for k, src in enumerate(sorted((tiny_city / "train").rglob("*.jpg"))):
        out = dest / src.relative_to(tiny_city / "train")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(src).resize(size_of(k), Image.BILINEAR).save(out, quality=95)
    return build_train_set(dest)


def test_on_the_device_workers_only_decode_and_the_batch_is_resized_there_to_the_same_pixels(
    tiny_city, tmp_path
):
    """augment_on: device ships batches at their decoded size (the workers' work is decoding) and resizes them on
    the device in one operation: the same pixels as resizing image by image in the workers."""
    big = _upscaled_copy(tiny_city, tmp_path / "big")
    tensor_only = AUGMENT[1:]
    for augment in ((), tensor_only):
        in_workers, _ = _batches(big, augment)
        on_device, _ = _batches(big, augment, augment_on="device")
        for a, b in zip(in_workers, on_device):
            assert a["images"].shape == (8, 3, *SIZE) and torch.equal(a["images"], b["images"])
    sampler = PlaceBatchSampler(
        big.place_offsets, big.place_images, 4, 2, seed=7, batches_per_epoch=1
    )
    shipped = next(
        iter(
            PlaceBatches(
                big, sampler, [], SIZE, [0.5] * 3, [0.25] * 3, augment_on="device", num_workers=0
            ).loader
        )
    )["images"]
    # decoded at the JPEG draft scale that stays >= twice the training size (full size here), not resized yet
    assert shipped.dtype == torch.uint8 and shipped.shape == (8, 3, 120, 160)


def test_on_the_device_a_batch_of_mixed_sizes_is_resized_in_the_workers(tiny_city, tmp_path):
    mixed = _upscaled_copy(
        tiny_city, tmp_path / "mixed", lambda k: (160, 120) if k % 2 else (100, 80)
    )
    for a, b in zip(_batches(mixed)[0], _batches(mixed, augment_on="device")[0]):
        assert torch.equal(a["images"], b["images"])


def test_training_decoding_gives_pillows_pixels_for_every_kind_of_image(tiny_city, tmp_path):
    """load_rgb (libjpeg-turbo straight into an array for plain JPEGs) equals Pillow's decoding through
    load_image, draft scale included, and falls back to it for everything else."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    from vpr.data.datasets import load_rgb

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    cases = {
        "baseline.jpg": dict(quality=90),
        "progressive.jpg": dict(quality=80, progressive=True),
        "no_subsampling.jpg": dict(quality=95, subsampling=0),
        "photo.png": {},
    }
    for name, options in cases.items():
        photo.save(tmp_path / name, **options)
    photo.convert("L").save(tmp_path / "gray.jpg")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned by 90 degrees
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    paths = sorted(tmp_path.iterdir()) + sorted((tiny_city / "train").rglob("*.jpg"))[:20]
    for path in paths:
        for draft in (None, (48, 64), (96, 128), (240, 320), (300, 400)):
            got, want = load_rgb(str(path), draft), pil_to_tensor(load_image(str(path), draft))
            assert (
                got.shape == want.shape and got.stride() == want.stride() and torch.equal(got, want)
            ), (path, draft)


def _source(train_set, workers, augment_on="device", count=8):
    sampler = PlaceBatchSampler(
        train_set.place_offsets, train_set.place_images, 4, 2, seed=7, batches_per_epoch=count
    )
    return PlaceBatches(
        train_set,
        sampler,
        [],
        SIZE,
        [0.5] * 3,
        [0.25] * 3,
        seed=7,
        num_workers=workers,
        augment_on=augment_on,
    )


@pytest.mark.parametrize("augment_on", ["device", "workers"])
def test_workers_reuse_their_shared_batch_buffers_once_handed_back_and_every_batch_stays_right(
    train_set, augment_on
):
    """A fresh shared buffer costs its first write (page faults, zeroing); the workers reuse a few, each one
    written again only after the main process has asked for the next batch."""
    expected = [b["images"].clone() for b in _source(train_set, 0, augment_on).uint8_batches(0)]
    source = _source(train_set, 2, augment_on)
    for epoch in (0, 0, 1):
        slots = []
        for batch, want in zip(source.uint8_batches(epoch), expected):
            slots.append(int(batch["slot"]))
            if epoch == 0:
                assert torch.equal(batch["images"], want)
        assert (
            len(slots) == 8 and min(slots) >= 0 and len(set(slots)) < len(slots)
        )  # reused, never fresh
    assert not source.dataset.slots.in_use.any()  # all handed back at the end of the epoch


def test_a_consumer_that_keeps_every_batch_gets_fresh_buffers_not_overwritten_ones(train_set):
    expected = [b["images"].clone() for b in _source(train_set, 0, count=14).uint8_batches(0)]
    source = _source(train_set, 2, count=14)
    source.keys.set_epoch(0)
    kept = list(source.loader)  # never handed back
    assert [int(b["slot"]) for b in kept].count(-1) == 14 - source.dataset.slots.in_use.numel() > 0
    for batch, want in zip(kept, expected):
        assert torch.equal(batch["images"], want)
