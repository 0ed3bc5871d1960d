"""Batch samplers for place-based training, by name (``sampler:`` in params.yaml).

Builders take ``(train_set, places_per_batch, images_per_place, seed, batches_per_epoch)`` and return a
batch sampler with ``set_epoch(epoch)``: the batches of an epoch depend only on ``(seed, epoch)`` (and, for
GPM, on the state saved in checkpoints), so a resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import samplers as pml_samplers
from pytorch_metric_learning.utils import common_functions as pml_common
from torch.utils.data import BatchSampler, Sampler

from vpr.errors import require
from vpr.registry import Registry

SAMPLERS = Registry("sampler")


def _check_pk(sizes: np.ndarray, P: int, K: int) -> None:
    require(K >= 2, "train.images_per_place", f"must be >= 2 (positives need pairs), got {K}")
    require(
        K <= sizes.min(),
        "train.images_per_place",
        f"{K} is larger than the smallest place ({sizes.min()} images); lower it or raise gt.train_min_images",
    )
    require(
        2 <= P <= len(sizes),
        "train.places_per_batch",
        f"must be between 2 and the number of training places ({len(sizes)}), got {P}",
    )


class PlaceBatchSampler(Sampler):
    """Batches of P places x K images, the K images drawn *without* replacement within each place.

    (The course template draws them with replacement, so a batch can hold the same image twice, a free
    positive pair that teaches nothing.) Each pass over the places is a new permutation cut into whole
    batches, so no batch repeats a place.
    """

    def __init__(
        self,
        place_offsets,
        place_images,
        places_per_batch: int,
        images_per_place: int,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        place_city=None,
    ):
        self.place_city = (
            None if place_city is None else np.asarray(place_city)
        )  # set: batches city by city
        self.offsets = np.asarray(place_offsets)
        self.images = np.asarray(place_images)
        _check_pk(np.diff(self.offsets), places_per_batch, images_per_place)
        self.P, self.K, self.seed = places_per_batch, images_per_place, seed
        self.num_places = len(self.offsets) - 1
        self.full_batches = self.num_places // places_per_batch
        self.batches_per_epoch = batches_per_epoch or self.full_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _images_of(self, places, rng) -> list[int]:
        batch = []
        for place in places:
            members = self.images[self.offsets[place] : self.offsets[place + 1]]
            batch.extend(rng.choice(members, self.K, replace=False).tolist())
        return batch

    def _place_order(self, rng) -> np.ndarray:
        """All places in random order; with cities, city after city (cities in name order), each city's places
        in random order: consecutive batches then come from one city (GSV-Cities' ``shuffle_all=False``)."""
        if self.place_city is None:
            return rng.permutation(self.num_places)
        return np.concatenate(
            [
                rng.permutation(np.flatnonzero(self.place_city == city))
                for city in sorted(set(self.place_city.tolist()))
            ]
        )

    def _random_batches(self, rng, count: int):
        emitted = 0
        while emitted < count:
            order = self._place_order(rng)[: self.full_batches * self.P].reshape(-1, self.P)
            for places in order[: count - emitted]:
                yield self._images_of(places, rng)
            emitted += len(order)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        yield from self._random_batches(rng, self.batches_per_epoch)


@contextlib.contextmanager
def _pml_random(seed: int, epoch: int):
    """PML samplers draw from a module-level numpy generator: give it ours for the duration."""
    saved = pml_common.NUMPY_RANDOM
    pml_common.NUMPY_RANDOM = np.random.RandomState(
        np.random.SeedSequence([seed, epoch]).generate_state(1)[0]
    )
    try:
        yield
    finally:
        pml_common.NUMPY_RANDOM = saved


class PMLBatches(Sampler):
    """A pytorch-metric-learning sampler made epoch-seeded and cut to ``batches_per_epoch`` batches."""

    def __init__(self, make_batches, batches_per_epoch: int, seed: int):
        self.make_batches, self.batches_per_epoch, self.seed, self.epoch = (
            make_batches,
            batches_per_epoch,
            seed,
            0,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        with _pml_random(self.seed, self.epoch):
            batches = [list(map(int, b)) for b in self.make_batches()]
        yield from batches[: self.batches_per_epoch]


class GlobalProxySampler(PlaceBatchSampler):
    """Global proxy-based hard mining (GPM, Ali-bey et al., arXiv 2302.14217).

    A proxy head maps each training descriptor to a compact proxy space; the proxies of a place seen during
    an epoch are averaged into one descriptor per place. At the next epoch a faiss index over these place
    proxies builds each batch from a random place and its nearest (mutually similar, hence hard) places.
    The first epoch, with no proxies yet, uses random batches.
    """

    def __init__(self, *args, proxy_dim: int = 128, neighbours: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.proxy_dim, self.neighbours = proxy_dim, neighbours
        self.bank_sum = torch.zeros(self.num_places, proxy_dim)
        self.bank_count = torch.zeros(self.num_places)
        self.proxies: torch.Tensor | None = None

    def record(self, labels: torch.Tensor, proxies: torch.Tensor) -> None:
        labels = labels.cpu()
        self.bank_sum.index_add_(0, labels, proxies.detach().float().cpu())
        self.bank_count.index_add_(0, labels, torch.ones(len(labels)))

    def set_epoch(self, epoch: int) -> None:
        if (
            self.bank_count.sum() > 0
        ):  # close the previous epoch: its proxies drive this one's batches
            seen = self.bank_count > 0
            proxies = torch.zeros_like(self.bank_sum)
            proxies[seen] = F.normalize(self.bank_sum[seen] / self.bank_count[seen, None], dim=1)
            self.proxies = proxies
            self.bank_sum.zero_()
            self.bank_count.zero_()
        super().set_epoch(epoch)

    def state_dict(self) -> dict:
        return {"bank_sum": self.bank_sum, "bank_count": self.bank_count, "proxies": self.proxies}

    def load_state_dict(self, state: dict) -> None:
        self.bank_sum, self.bank_count, self.proxies = (
            state["bank_sum"],
            state["bank_count"],
            state["proxies"],
        )

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.proxies is None:
            yield from self._random_batches(rng, self.batches_per_epoch)
            return
        import faiss

        proxies = np.ascontiguousarray(self.proxies.numpy(), dtype=np.float32)
        index = faiss.IndexFlatIP(proxies.shape[1])
        index.add(proxies)
        k = min(self.num_places, self.P * self.neighbours)
        _, neighbours = index.search(proxies, k)
        used = np.zeros(self.num_places, dtype=bool)
        emitted = 0
        for place in rng.permutation(self.num_places):
            if emitted == self.batches_per_epoch:
                return
            if used[place]:
                continue
            group = [place] + [q for q in neighbours[place] if q != place and not used[q]][
                : self.P - 1
            ]
            if len(group) < self.P:
                continue
            used[group] = True
            emitted += 1
            yield self._images_of(group, rng)
        yield from self._random_batches(rng, self.batches_per_epoch - emitted)


@SAMPLERS.register()
def places(
    train_set,
    places_per_batch: int,
    images_per_place: int,
    seed: int,
    batches_per_epoch,
    *,
    city_batches: bool,
):
    return PlaceBatchSampler(
        train_set.place_offsets,
        train_set.place_images,
        places_per_batch,
        images_per_place,
        seed,
        batches_per_epoch,
        train_set.place_city if city_batches else None,
    )


@SAMPLERS.register()
def m_per_class(
    train_set, places_per_batch: int, images_per_place: int, seed: int, batches_per_epoch
):
    sizes = np.diff(train_set.place_offsets)
    _check_pk(sizes, places_per_batch, images_per_place)
    batches = batches_per_epoch or len(sizes) // places_per_batch
    batch_size = places_per_batch * images_per_place
    labels = train_set.place_of_image

    def make():
        sampler = pml_samplers.MPerClassSampler(
            labels,
            m=images_per_place,
            batch_size=batch_size,
            length_before_new_iter=batches * batch_size,
        )
        return list(BatchSampler(sampler, batch_size, drop_last=True))

    return PMLBatches(make, batches, seed)


@SAMPLERS.register()
def hierarchical(
    train_set,
    places_per_batch: int,
    images_per_place: int,
    seed: int,
    batches_per_epoch,
    *,
    cities_per_batch: int,
):
    sizes = np.diff(train_set.place_offsets)
    _check_pk(sizes, places_per_batch, images_per_place)
    cities = sorted(set(train_set.place_city.tolist()))
    require(
        2 <= cities_per_batch <= len(cities),
        "samplers.hierarchical.cities_per_batch",
        f"must be between 2 and the number of training cities ({len(cities)}), got {cities_per_batch}",
    )
    require(
        places_per_batch % cities_per_batch == 0,
        "train.places_per_batch",
        f"must be a multiple of samplers.hierarchical.cities_per_batch ({cities_per_batch}) with this sampler",
    )
    city_id = {c: i for i, c in enumerate(cities)}
    labels = np.stack(
        [
            train_set.place_of_image,
            [city_id[c] for c in train_set.place_city[train_set.place_of_image]],
        ],
        axis=1,
    )
    batches = batches_per_epoch or len(sizes) // places_per_batch
    from math import comb

    tuples = comb(len(cities), cities_per_batch)

    def make():
        return pml_samplers.HierarchicalSampler(
            labels,
            batch_size=places_per_batch * images_per_place,
            samples_per_class=images_per_place,
            batches_per_super_tuple=-(-batches // tuples),
            super_classes_per_batch=cities_per_batch,
        ).batches

    return PMLBatches(make, batches, seed)


@SAMPLERS.register()
def gpm(
    train_set,
    places_per_batch: int,
    images_per_place: int,
    seed: int,
    batches_per_epoch,
    *,
    proxy_dim: int,
    neighbours: int,
):
    return GlobalProxySampler(
        train_set.place_offsets,
        train_set.place_images,
        places_per_batch,
        images_per_place,
        seed,
        batches_per_epoch,
        proxy_dim=proxy_dim,
        neighbours=neighbours,
    )
