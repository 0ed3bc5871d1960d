"""Label-free training (``train.method: self_supervised``): VICReg alone between two augmented views of random
training images, ignoring the place labels (settings: ``self_supervised``, ``methods.self_supervised``)."""

from __future__ import annotations

import numpy as np
import torch

from vpr.errors import require
from vpr.train.addons.vicreg import VICRegOnViews
from vpr.train.context import Context, Method
from vpr.train.objectives import Objective


class VICRegObjective(Objective):
    """The label-free method's objective: VICReg alone (plus any add-on terms)."""

    name = "vicreg_loss"

    def __init__(self, descriptor_dim: int, settings: dict):
        super().__init__()
        self.vicreg = VICRegOnViews(descriptor_dim, settings)

    def main_loss(self, model, batch, out):
        return self.vicreg(model, batch, out)


class RandomBatches(torch.utils.data.Sampler):
    """``batches_per_epoch`` batches of random images (no labels), a new permutation each epoch."""

    def __init__(self, num_images: int, batch_size: int, seed: int, batches_per_epoch: int | None):
        require(
            2 <= batch_size <= num_images,
            "methods.self_supervised.batch_size",
            f"must be between 2 and the number of training images ({num_images}), got {batch_size}",
        )
        self.n, self.batch_size, self.seed = num_images, batch_size, seed
        self.batches_per_epoch = batches_per_epoch or num_images // batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.concatenate(
            [
                rng.permutation(self.n)
                for _ in range(-(-self.batches_per_epoch * self.batch_size // self.n))
            ]
        )
        for b in range(self.batches_per_epoch):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def self_supervised(ctx: Context, *, batch_size: int):
    t = ctx.cfg.train
    places = ctx.data.places
    sampler = RandomBatches(len(places.paths), batch_size, ctx.cfg.seed, t.batches_per_epoch)
    objective = VICRegObjective(ctx.model.descriptor_dim, ctx.cfg.self_supervised)
    dataset = ctx.dataset(places.paths)

    def batches(epoch: int):
        sampler.set_epoch(epoch)
        return ctx.loader(dataset, sampler, epoch)

    return Method(objective, batches, len(sampler), sampler)
