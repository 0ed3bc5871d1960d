"""Batch samplers for place-based training."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from vpr.registry import require


class PlaceBatchSampler(Sampler):
    """Batches of P places x K images, the K images drawn *without* replacement within each place.

    (The course template draws them with replacement, so a batch can hold the same image twice,
    a free positive pair that teaches nothing.) Each epoch visits the places in a new order given
    by ``(seed, epoch)``, so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, place_offsets, place_images, places_per_batch: int, images_per_place: int,
                 seed: int = 0, batches_per_epoch: int | None = None):
        self.offsets = np.asarray(place_offsets)
        self.images = np.asarray(place_images)
        sizes = np.diff(self.offsets)
        num_places = len(sizes)
        require(images_per_place >= 2, "train.images_per_place", f"must be >= 2 (positives need pairs), "
                f"got {images_per_place}")
        require(images_per_place <= sizes.min(), "train.images_per_place",
                f"{images_per_place} is larger than the smallest place ({sizes.min()} images); lower it or "
                f"raise gt.train_min_images")
        require(2 <= places_per_batch <= num_places, "train.places_per_batch",
                f"must be between 2 and the number of training places ({num_places}), got {places_per_batch}")
        self.P, self.K, self.seed = places_per_batch, images_per_place, seed
        self.full_batches = num_places // places_per_batch
        self.batches_per_epoch = batches_per_epoch or self.full_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        num_places = len(self.offsets) - 1
        emitted = 0
        while emitted < self.batches_per_epoch:
            # One pass = one permutation cut into whole batches, so no batch repeats a place.
            order = rng.permutation(num_places)[:self.full_batches * self.P].reshape(-1, self.P)
            for places in order[:self.batches_per_epoch - emitted]:
                batch = []
                for place in places:
                    members = self.images[self.offsets[place]:self.offsets[place + 1]]
                    batch.extend(rng.choice(members, self.K, replace=False).tolist())
                yield batch
            emitted += len(order)
