"""The training data path: uint8 batches from persistent workers, normalised (and optionally augmented) on the
device, augmentation seeded per image, decoding at the training size; global batches sharded across ranks."""
import numpy as np
import pytest
import torch
from PIL import Image

from vpr.data.datasets import PlaceImages, load_image
from vpr.data.groundtruth import build_train_set
from vpr.data.loading import PlaceBatches
from vpr.data.samplers import PlaceBatchSampler
from vpr.data.transforms import train_transform

SIZE = (48, 64)
AUGMENT = [{"name": "randaugment", "num_ops": 2}, {"name": "synthetic_night", "p": 0.5},
           {"name": "random_erasing", "variant": "soft"}]


@pytest.fixture(scope="module")
def train_set(tiny_city):
    return build_train_set(tiny_city / "train")


def _batches(train_set, augment=(), workers=0, rank=0, world=1, augment_on="workers", epoch=1, count=3):
    sampler = PlaceBatchSampler(train_set.place_offsets, train_set.place_images, 4, 2, seed=7, batches_per_epoch=count)
    source = PlaceBatches(train_set, sampler, list(augment), SIZE, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], seed=7,
                          num_workers=workers, augment_on=augment_on, rank=rank, world=world)
    return list(source(epoch)), sampler


def test_without_augmentation_batches_equal_the_per_image_float_pipeline(train_set):
    batches, sampler = _batches(train_set)
    sampler.set_epoch(1)
    reference = PlaceImages(train_set.paths, train_set.place_of_image,
                            train_transform([], SIZE, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]))
    for batch, indices in zip(batches, sampler):
        assert batch["images"].dtype == torch.float32 and batch["images"].shape == (8, 3, *SIZE)
        assert torch.equal(batch["images"], torch.stack([reference[i][0] for i in indices]))
        assert torch.equal(batch["labels"], torch.as_tensor(train_set.place_of_image[indices]))


def test_augmented_batches_do_not_depend_on_workers_nor_where_augmentation_runs(train_set):
    in_main, _ = _batches(train_set, AUGMENT, workers=0)
    in_worker, _ = _batches(train_set, AUGMENT, workers=1)
    on_device, _ = _batches(train_set, AUGMENT, augment_on="device")   # the CPU is the device here
    plain, _ = _batches(train_set)
    tensor_only = AUGMENT[1:]     # no Pillow implementation: the very same kernels in workers and on the device
    for a, b, c, d, e, f in zip(in_main, in_worker, on_device, plain, _batches(train_set, tensor_only)[0],
                                _batches(train_set, tensor_only, augment_on="device")[0]):
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
        assert torch.equal(torch.cat([a["images"], b["images"]]), w["images"])   # same pixels, same augmentation
        assert torch.equal(a["labels"], w["labels"]) and torch.equal(b["labels"], w["labels"])   # global labels


def test_large_jpegs_are_decoded_at_the_training_size(tmp_path):
    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
    assert load_image(str(path)).size == (640, 480)
    assert load_image(str(path), draft_size=(96, 128)).size == (160, 120)   # 1/4 scale: still >= 96 x 128
    assert load_image(str(path), draft_size=(240, 320)).size == (320, 240)
    assert load_image(str(path), draft_size=(300, 400)).size == (640, 480)  # no power of two fits: full size
