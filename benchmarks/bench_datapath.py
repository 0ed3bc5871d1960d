"""Training data path at real-photo size, no model: 640x480 JPEG street photos -> 320x320 training batches
with RandAugment(3), two loader workers. Images per second of

  * ours: vpr.data.loading.PlaceBatches' loader (a whole batch per item, decoding, resize, RandAugment,
    uint8 stacking), exactly as the train stage builds it;
  * ours with ``train.augment_on: device`` (the setting for a GPU fed by few CPU cores, as CosPlace does):
    the same loader, whose workers now only decode and stack; resize and RandAugment run on the GPU batch,
    which this figure leaves out (it is the GPU's work: bench_train measures a step with it on a GPU);
  * pure decode: the same files, the same two workers, batches of the same size, each image only decoded
    (``Image.open(path).convert("RGB")``), nothing returned but a count; and the same with libjpeg-turbo
    (simplejpeg, the decoder ours uses for plain JPEGs), for comparison;
  * the course template (gmberton/Simple_VPR_codebase): one item per place, ``Image.open().convert("RGB")``,
    RandAugment(num_ops=3), ToTensor, Normalize in the workers, default collation of float tensors.

The three loaders run in turns, repeated; the figures are medians of the per-turn ratios.

    python benchmarks/bench_datapath.py [--quick]
"""

from __future__ import annotations

import statistics
import time

from common import Figure, fmt_spread, spread, standalone, synthetic_city

PHOTOS = dict(
    image_size=[480, 640],
    train_cities=1,
    places_per_city=96,
    max_images_per_place=4,
    val_blocks=2,
    test_blocks=2,
    val_queries=10,
    test_queries=10,
)
SIZE = (320, 320)
PLACES, PER_PLACE, WORKERS = 16, 4, 2


class _PureDecode:
    """Items = lists of paths; each image decoded in full, as the template's loader does before augmenting."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        from PIL import Image

        for path in self.batches[i]:
            with Image.open(path) as img:
                img.convert("RGB")
        return len(self.batches[i])


class _PureTurboDecode(_PureDecode):
    """The same, decoded by libjpeg-turbo straight into arrays (simplejpeg: the decoder our loader uses)."""

    def __getitem__(self, i):
        import simplejpeg

        for path in self.batches[i]:
            with open(path, "rb") as fh:
                simplejpeg.decode_jpeg(fh.read(), colorspace="RGB")
        return len(self.batches[i])


class _TemplatePlaces:
    """The course template's TrainDataset.__getitem__ with its training transform, over fixed places."""

    def __init__(self, places):
        import torchvision.transforms as tfm

        self.places = places
        self.transform = tfm.Compose(
            [
                tfm.RandAugment(num_ops=3),
                tfm.ToTensor(),
                tfm.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self):
        return len(self.places)

    def __getitem__(self, i):
        import torch
        from PIL import Image

        images = [self.transform(Image.open(p).convert("RGB")) for p in self.places[i]]
        return torch.stack(images), torch.tensor(i).repeat(len(images))


def _rate(batches, count_images) -> float:
    start = time.perf_counter()
    n = sum(count_images(item) for item in batches())
    return n / (time.perf_counter() - start)


def _loaders(city):
    from torch.utils.data import DataLoader

    from vpr.data.groundtruth import build_train_set
    from vpr.data.loading import PlaceBatches
    from vpr.data.samplers import PlaceBatchSampler

    train_set = build_train_set(city / "train")
    sampler = PlaceBatchSampler(
        train_set.place_offsets, train_set.place_images, PLACES, PER_PLACE, seed=0
    )
    ours = PlaceBatches(
        train_set,
        sampler,
        [{"name": "randaugment", "num_ops": 3}],
        SIZE,
        (0.5,) * 3,
        (0.5,) * 3,
        seed=0,
        num_workers=WORKERS,
    )
    batches = [
        [train_set.paths[i] for i in indices] for indices in sampler
    ]  # epoch 0's batches, as paths
    pure = DataLoader(
        _PureDecode(batches), batch_size=None, num_workers=WORKERS, persistent_workers=True
    )
    turbo = DataLoader(
        _PureTurboDecode(batches), batch_size=None, num_workers=WORKERS, persistent_workers=True
    )
    places = [b[k : k + PER_PLACE] for b in batches for k in range(0, len(b), PER_PLACE)]
    template = DataLoader(
        _TemplatePlaces(places), batch_size=PLACES, num_workers=WORKERS, persistent_workers=True
    )
    on_device = PlaceBatches(
        train_set,
        sampler,
        [{"name": "randaugment", "num_ops": 3}],
        SIZE,
        (0.5,) * 3,
        (0.5,) * 3,
        seed=0,
        num_workers=WORKERS,
        augment_on="device",
    )
    # the uint8 batches the training loop gets (and then makes float, and with augment_on: device resizes and
    # augments, on the device), each buffer handed back to its worker when the next batch is asked for
    return dict(
        ours=(lambda: ours.uint8_batches(0), lambda b: len(b["images"])),
        ours_device=(lambda: on_device.uint8_batches(0), lambda b: len(b["images"])),
        pure=(lambda: iter(pure), lambda n: n),
        pure_turbo=(lambda: iter(turbo), lambda n: n),
        template=(lambda: iter(template), lambda b: len(b[0]) * b[0].shape[1]),
    ), len(batches)


def run(quick: bool = False) -> list[Figure]:
    from PIL import Image

    city = synthetic_city("photos_640x480", **PHOTOS)
    loaders, n_batches = _loaders(city)
    first = next((city / "train").rglob("*.jpg"))
    with Image.open(first) as img:
        photo = f"{img.width}x{img.height}"
    for loader, count in loaders.values():  # start the persistent workers, warm the page cache
        _rate(loader, count)
    rates = {name: [] for name in loaders}
    for _ in range(2 if quick else 5):
        for name, (loader, count) in loaders.items():
            rates[name].append(_rate(loader, count))
    vs_decode = spread(o / p for o, p in zip(rates["ours"], rates["pure"]))
    vs_template = spread(o / t for o, t in zip(rates["ours"], rates["template"]))
    device_vs_decode = spread(o / p for o, p in zip(rates["ours_device"], rates["pure"]))
    device_vs_turbo = spread(o / p for o, p in zip(rates["ours_device"], rates["pure_turbo"]))
    med = {k: statistics.median(v) for k, v in rates.items()}
    common = (
        f"{photo} JPEGs -> {SIZE[0]}x{SIZE[1]}, RandAugment(3), {WORKERS} workers, batches of "
        f"{PLACES}x{PER_PLACE}, {n_batches} batches per turn"
    )
    return [
        Figure(
            "data path images/s / pure JPEG decode images/s, augment_on: device (GPU training)",
            f"{device_vs_decode['median']:.3f}",
            ">= 0.8",
            device_vs_decode["median"] >= 0.8,
            f"{common}; the workers decode and stack, the resize and RandAugment run on the GPU batch (not "
            f"counted: the GPU's work); {fmt_spread(device_vs_decode)}; {med['ours_device']:.0f} vs "
            f"{med['pure']:.0f} images/s",
            rates,
        ),
        Figure(
            "data path images/s / pure libjpeg-turbo decode images/s, augment_on: device",
            f"{device_vs_turbo['median']:.3f}",
            "for comparison",
            None,
            f"{common}; the same files decoded by simplejpeg (our decoder) into arrays, nothing returned: what "
            f"passing the batches to the main process costs; {fmt_spread(device_vs_turbo)}; "
            f"{med['ours_device']:.0f} vs {med['pure_turbo']:.0f} images/s",
            rates,
        ),
        Figure(
            "data path images/s / pure JPEG decode images/s, augment_on: workers (CPU training)",
            f"{vs_decode['median']:.3f}",
            "for comparison",
            None,
            f"{common}; resize and RandAugment in the "
            f"workers; {fmt_spread(vs_decode)}; {med['ours']:.0f} vs {med['pure']:.0f} images/s",
            rates,
        ),
        Figure(
            "data path images/s / course template's data path images/s",
            f"{vs_template['median']:.2f}",
            ">= 2",
            vs_template["median"] >= 2,
            f"{common}; {fmt_spread(vs_template, 2)}; {med['ours']:.0f} vs "
            f"{med['template']:.0f} images/s (template: full-size RandAugment, float32 tensors)",
            rates,
        ),
    ]


if __name__ == "__main__":
    standalone(__doc__, run)
