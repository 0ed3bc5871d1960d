"""The training data path: batches built in loader workers, finished on the training device.

Keeping the network busy is the point: decoding, augmentation and batching must hide behind compute.
  * A whole batch is one item: a worker receives the batch's key ``(epoch, number, image indices)`` and
    decodes, resizes (JPEG draft mode: the decoder itself shrinks by a power of two) and stacks the images
    as uint8 — a quarter of the bytes of float32 to pass between processes and to copy to the GPU.
  * Workers persist across epochs and prefetch; on CUDA the batch sits in pinned memory and is copied
    asynchronously. Each worker reuses a few shared-memory batch buffers (``SharedBatchSlots``), each handed
    back when the training loop asks for the next batch: writing into fresh shared memory costs about as much
    as decoding.
  * On the device the batch becomes float and normalised in one operation (and channels-last on CUDA).
  * ``train.augment_on: device`` resizes (the whole batch at once) and augments (image by image) there too,
    as CosPlace does on the GPU, so a couple of CPU workers only decode plain JPEGs (at the smallest draft
    scale that stays at least the training size; other images are resized in the workers); ``workers``
    (default) resizes and augments in the workers.
Augmentation draws from a seed per image derived from ``(seed, epoch, batch number, position in the
batch)``, so the images of a batch do not depend on the number of workers, on which worker built it, or on
the number of processes (DDP: each rank builds its share of the global batch, see ``rank`` / ``world``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info
from torchvision.transforms import v2

from vpr.data.datasets import load_rgb
from vpr.data.images import PlainJpeg
from vpr.data.transforms import augmentations, split_for_pil

PREFETCH = 2  # batches each loader worker prepares ahead (the DataLoader's default)


def image_seeds(seed: int, epoch: int, number: int, count: int) -> np.ndarray:
    """One augmentation seed per position of batch ``number`` of ``epoch``."""
    return np.random.SeedSequence([seed, epoch, number]).generate_state(count).astype(np.int64)


class BatchKeys(Sampler):
    """The global batches of a batch sampler as keys ``(epoch, number, indices)``: one key = one loader item."""

    def __init__(self, batch_sampler):
        self.batch_sampler, self.epoch = batch_sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        for number, indices in enumerate(self.batch_sampler):
            yield self.epoch, number, tuple(int(i) for i in indices)


@contextlib.contextmanager
def _main_process_guard():
    """In the main process (num_workers = 0): leave the global random state alone, and do the many tiny
    per-image operations on one thread (several threads make them much slower, and far worse on a busy CPU)."""
    if get_worker_info() is not None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


class SharedBatchSlots:
    """Shared-memory batch buffers that the loader workers reuse. The first write to a fresh shared buffer costs
    about as much as decoding the batch's JPEGs (a page fault, and the kernel zeroing the page, for every 4 KiB),
    so each worker keeps ``per_worker`` buffers, and the main process hands one back (``release``) once it is done
    with the batch in it. A worker whose buffers are all in use takes a fresh one: a consumer that never hands
    batches back loses speed, not data."""

    def __init__(self, workers: int, per_worker: int):
        self.per_worker = per_worker
        self.in_use = torch.zeros(workers * per_worker, dtype=torch.int32).share_memory_()
        self._buffers = {}  # filled in each worker: its own slot -> storage

    def take(self, nbytes: int):
        """In a worker: (a free shared storage of at least ``nbytes``, its slot), or (None, -1) if all are in use."""
        flags = self.in_use.numpy()
        first = get_worker_info().id * self.per_worker
        for slot in range(first, first + self.per_worker):
            if flags[slot] == 0:
                flags[slot] = 1
                storage = self._buffers.get(slot)
                if storage is None or storage.nbytes() < nbytes:
                    storage = self._buffers[slot] = torch.UntypedStorage._new_shared(nbytes)
                return storage, slot
        return None, -1

    def release(self, slot: int) -> None:
        """The batch in ``slot`` is no longer read (main process), or was never sent (its worker): the worker may
        write its next batch there."""
        if slot >= 0:
            self.in_use[slot] = 0


def _uint8_batch(shape, channels_last: bool, slots: SharedBatchSlots | None = None):
    """An empty uint8 batch (B, C, H, W) and its slot (-1: none). In a loader worker it lives in shared memory
    from the start, as the loader's own collation does it (``_new_shared``), so handing it to the main process
    copies nothing; reused from ``slots`` when given. ``channels_last``: laid out (B, H, W, C) like a decoded
    image, so each image lands with one plain copy."""
    b, c, h, w = shape
    strides = (h * w * c, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)
    if get_worker_info() is None:
        return torch.empty_strided(shape, strides, dtype=torch.uint8), -1
    storage, slot = slots.take(b * c * h * w) if slots is not None else (None, -1)
    if storage is None:  # a fresh one, not to hand back
        storage = torch.UntypedStorage._new_shared(b * c * h * w)
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape, strides), slot


class PlaceBatchImages(Dataset):
    """Builds this process's share of a global batch from its key: images decoded at ``image_size`` (H, W),
    augmented per image when ``augment`` is given, stacked as uint8; labels of the *whole* global batch (a
    metric loss on the global batch needs them); the per-image seeds (for augmentation on the device)."""

    def __init__(
        self,
        paths,
        labels,
        image_size,
        augment=None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        resize_here: bool = True,
    ):
        self.paths = [str(p) for p in paths]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.image_size = (
            tuple(image_size) if image_size else None
        )  # None: native size (all images alike)
        self.resize = v2.Compose(
            [v2.ToImage()]
            + ([v2.Resize(self.image_size, antialias=True)] if self.image_size else [])
        )
        self.resize_here = resize_here  # False: a batch of plain JPEGs of one decoded size is resized on the device
        on_pil, on_tensor = split_for_pil(list(augment or []))
        self.augment_pil = (
            v2.Compose(on_pil) if on_pil else None
        )  # after the resize, on the PIL image
        self.augment = v2.Compose(on_tensor) if on_tensor else None  # then on the uint8 tensor
        self.seed, self.rank, self.world = seed, rank, world
        self.slots: SharedBatchSlots | None = (
            None  # set by the owner of the loader, which hands buffers back
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        epoch, number, indices = key
        share = len(indices) // self.world
        mine = slice(self.rank * share, (self.rank + 1) * share)
        seeds = image_seeds(self.seed, epoch, number, len(indices))[mine]
        images, slot = (None, -1) if self.resize_here else self._decoded_jpegs(indices[mine])
        if images is None:
            images, slot = self._prepared(indices[mine], seeds)
        return {
            "images": images,
            "labels": self.labels[list(indices)],
            "seeds": torch.from_numpy(seeds),
            "slot": torch.tensor(slot),
        }

    def _prepared(self, indices, seeds):
        """The general path: each image decoded, resized and augmented here, then copied into the batch; and
        the batch's slot."""
        images, slot = None, -1
        with _main_process_guard():
            for j, (i, s) in enumerate(zip(indices, seeds)):
                image = self.resize(load_rgb(self.paths[i], draft_size=self.image_size))
                if images is None:
                    images, slot = _uint8_batch(
                        (len(indices), *image.shape), channels_last=False, slots=self.slots
                    )
                elif image.shape != images.shape[1:]:
                    from vpr.errors import DataError

                    raise DataError(
                        f"{self.paths[i]}: {tuple(image.shape[1:])} px where this batch's images are "
                        f"{tuple(images.shape[2:])}; train.image_size: null (native size) needs training "
                        "images of one size: set train.image_size"
                    )
                if self.augment_pil is not None or self.augment is not None:
                    # every draw here is on the CPU generator; torch.manual_seed would also queue CUDA seeding,
                    # which records a Python stack on each call (about a millisecond per image)
                    torch.default_generator.manual_seed(int(s))
                if self.augment_pil is not None:
                    image = v2.functional.pil_to_tensor(
                        self.augment_pil(v2.functional.to_pil_image(image))
                    )
                if self.augment is not None:
                    image = self.augment(image)
                images[j] = image
        return images, slot

    def _decoded_jpegs(self, indices):
        """For the device to resize: a batch of plain JPEGs of one decoded size, each decoded straight into its
        place in the (shared-memory) batch, and its slot; (None, -1) when the images are not all that (the general
        path then)."""
        jpegs = [PlainJpeg.of(self.paths[i], self.image_size) for i in indices]
        if not all(jpegs) or len({j.size for j in jpegs}) != 1:
            return None, -1
        images, slot = _uint8_batch(
            (len(jpegs), 3, *jpegs[0].size), channels_last=True, slots=self.slots
        )
        for place, jpeg in zip(images, jpegs):
            if jpeg.decode(out=place.permute(1, 2, 0).numpy()) is None:
                if self.slots is not None:
                    self.slots.release(slot)
                return None, -1
        return images, slot


class PlaceBatches:
    """``batches(epoch)`` for the training loop: dict batches {images (float, normalised, on ``device``),
    labels} from a place batch sampler, with the data path above."""

    def __init__(
        self,
        train_set,
        batch_sampler,
        augment,
        image_size,
        mean,
        std,
        *,
        seed: int = 0,
        device: str = "cpu",
        num_workers: int = 1,
        augment_on: str = "workers",
        channels_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ):
        steps = augmentations(augment, image_size)
        on_device = augment_on == "device"
        self.keys = BatchKeys(batch_sampler)
        self.dataset = PlaceBatchImages(
            train_set.paths,
            train_set.place_of_image,
            image_size,
            None if on_device else steps,
            seed,
            rank,
            world,
            resize_here=not on_device,
        )
        self.device_size = list(image_size) if on_device and image_size else None
        self.device_augment = v2.Compose(steps) if on_device and steps else None
        self.device = torch.device(device)
        self.mean, self.std = list(mean), list(std)
        self.channels_last = channels_last
        # per worker: its prefetched batches, the one the main process is using and one being pinned
        self.dataset.slots = (
            SharedBatchSlots(num_workers, PREFETCH + 2) if num_workers > 0 else None
        )
        # its own generator: the loader's worker seeds do not consume the global random state of the loop
        self.loader = DataLoader(
            self.dataset,
            batch_size=None,
            sampler=self.keys,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
            prefetch_factor=PREFETCH if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, epoch: int):
        for batch in self.uint8_batches(epoch):
            # finish() always writes a new tensor (the float batch), so the worker's buffer can be reused after it
            yield {
                "images": self.finish(batch["images"], batch["seeds"]),
                "labels": batch["labels"].to(self.device, non_blocking=True),
            }

    def uint8_batches(self, epoch: int):
        """The workers' uint8 batches of ``epoch`` (dicts: images, labels, seeds, slot), before ``finish``. Each one
        lives in a buffer that its worker reuses once the next batch is asked for: use it before that, or copy it."""
        self.keys.set_epoch(epoch)
        for batch in self.loader:
            yield batch
            if self.dataset.slots is not None:
                self.dataset.slots.release(int(batch["slot"]))

    def finish(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> (augmented on the device,) float, normalised, channels-last if asked."""
        # asynchronous only from pinned memory (CUDA): the source buffer is handed back to its worker afterwards
        images = images.to(self.device, non_blocking=self.loader.pin_memory)
        if (
            self.device_size is not None
        ):  # one batched resize (a no-op when the workers already resized)
            images = v2.functional.resize(images, self.device_size, antialias=True)
        if self.device_augment is not None:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                augmented = []
                for image, s in zip(images, seeds.tolist()):
                    torch.manual_seed(s)
                    augmented.append(self.device_augment(image))
                images = torch.stack(augmented)
        images = v2.functional.normalize(
            v2.functional.to_dtype(images, torch.float32, scale=True), self.mean, self.std
        )
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images
