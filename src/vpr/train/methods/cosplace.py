"""CosPlace training (Berton et al., Rethinking Visual Geo-localization for Large-Scale Applications, CVPR 2022).

Images are split into classes by UTM cell (M metres) and heading bin (alpha degrees). Classes are put in
groups so that two classes of one group are at least N cells (and L heading bins) apart: adjacent classes,
which see the same things, are never competitors of one classifier. Each group has its own CosFace
classifier (s = 30, m = 0.4); an epoch trains one group, and the groups rotate across epochs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from pytorch_metric_learning.losses import CosFaceLoss
from torch import nn

from vpr.data.filenames import parse_name
from vpr.errors import DataError, require
from vpr.train.context import Context, Method
from vpr.train.objectives import Objective


def class_and_group(utm: np.ndarray, heading: np.ndarray, M: float, alpha: float, N: int, L: int):
    """Per image: its class (east cell, north cell, heading bin) and its group (cells mod N, bin mod L)."""
    east, north = np.floor(utm[:, 0] / M).astype(np.int64), np.floor(utm[:, 1] / M).astype(np.int64)
    bins = np.floor((heading % 360) / alpha).astype(np.int64)
    classes = np.stack([east, north, bins], axis=1)
    groups = np.stack([east % N, north % N, bins % L], axis=1)
    return classes, groups


def make_groups(
    utm, heading, M: float, alpha: float, N: int, L: int, min_images_per_class: int, groups_num: int
):
    """[group] -> [class] -> image indices, for the first ``groups_num`` non-empty groups (as in CosPlace)."""
    classes, groups = class_and_group(utm, heading, M, alpha, N, L)
    members: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(map(tuple, classes)):
        members[c].append(i)
    by_group: dict[tuple, list[tuple]] = defaultdict(list)
    for c, idx in sorted(members.items()):
        if len(idx) >= min_images_per_class:
            by_group[tuple(groups[idx[0]])].append(c)
    ordered = [by_group[g] for g in sorted(by_group)][:groups_num]
    return [[np.array(members[c]) for c in group] for group in ordered]


class CosPlaceObjective(Objective):
    """CosFace (pytorch-metric-learning) with one classifier per group; the batch says which group."""

    name = "cosface_loss"

    def __init__(self, class_counts: list[int], embedding_size: int, margin: float, scale: float):
        super().__init__()
        self.heads = nn.ModuleList(
            CosFaceLoss(n, embedding_size, margin=margin, scale=scale) for n in class_counts
        )

    def main_loss(self, model, batch, out):
        return self.heads[int(batch["group"])](out["descriptors"], batch["labels"])


class GroupBatches(torch.utils.data.Sampler):
    """The epoch's group: batches of ``batch_size`` random classes (fewer if the group is smaller), one random
    image of each."""

    def __init__(self, groups, batch_size: int, seed: int, batches_per_epoch: int | None):
        self.groups, self.batch_size, self.seed = groups, batch_size, seed
        require(
            min(len(g) for g in groups) >= 2,
            "methods.cosplace.groups_num",
            "every group needs >= 2 classes; use fewer groups or lower min_images_per_class",
        )
        mean_classes = int(np.mean([len(g) for g in groups]))
        self.batches_per_epoch = batches_per_epoch or max(1, mean_classes // batch_size)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def group(self) -> int:
        return (self.epoch - 1) % len(self.groups)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        classes = self.groups[self.group]
        for _ in range(self.batches_per_epoch):
            picked = rng.choice(len(classes), min(self.batch_size, len(classes)), replace=False)
            yield [int(rng.choice(classes[c])) for c in picked]


def cosplace(
    ctx: Context,
    *,
    M: float,
    alpha: float,
    N: int,
    L: int,
    groups_num: int,
    min_images_per_class: int,
    batch_size: int,
    margin: float,
    scale: float,
    classifiers_lr: float,
):
    """Classes = UTM cells (M m) x heading bins (alpha deg); groups keep adjacent classes apart (N, L); one
    CosFace classifier per group (s 30, m 0.4, own lr); one group per epoch, rotating."""
    key = "methods.cosplace"
    places = ctx.data.places
    headings = []
    for p in places.paths:
        h = parse_name(p).heading
        if h == "":
            raise DataError(
                f"{p}: no heading in the name; train.method cosplace needs headings (field 9)"
            )
        headings.append(float(h))
    groups = make_groups(
        places.utm, np.array(headings), M, alpha, N, L, min_images_per_class, groups_num
    )
    require(
        len(groups) > 0,
        f"{key}.min_images_per_class",
        f"no class has {min_images_per_class} images; lower it (or M / alpha coarser)",
    )
    sampler = GroupBatches(groups, batch_size, ctx.cfg.seed, ctx.cfg.train.batches_per_epoch)
    objective = CosPlaceObjective([len(g) for g in groups], ctx.model.descriptor_dim, margin, scale)
    datasets = []
    for group in groups:  # labels are class indices within the group
        labels = np.full(len(places.paths), -1)
        for c, idx in enumerate(group):
            labels[idx] = c
        datasets.append(ctx.dataset(places.paths, labels))

    def batches(epoch: int):
        sampler.set_epoch(epoch)
        g = sampler.group
        for batch in ctx.loader(datasets[g], sampler, epoch):
            batch["group"] = g
            yield batch

    heads = [{"params": list(objective.heads.parameters()), "lr": classifiers_lr}]
    return Method(objective, batches, len(sampler), sampler, heads)
