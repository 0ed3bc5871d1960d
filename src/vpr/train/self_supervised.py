"""Self-supervised learning with VICReg (pytorch-metric-learning's VICRegLoss) between two augmented views of
each training image. As in the paper, the loss reads the output of an *expander* (an MLP: Linear, BatchNorm,
ReLU, ..., Linear) over the unnormalised global descriptors, where its variance target (std 1 per dimension)
is reachable; the L2-normalised descriptors used for retrieval are left to the place loss.

* as an auxiliary loss term added, with a weight (default 0.3), to any method's loss
  (``self_supervised.enabled: true``);
* as a label-free training method (``train.method: self_supervised``): the VICReg loss alone, on random
  training images, ignoring the place labels.
The second view uses the ``self_supervised.view_augment`` list (the first one the usual ``augment``).
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning.losses import VICRegLoss
from torch import nn

from vpr.registry import require, with_defaults
from vpr.train.loop import Objective
from vpr.train.context import Context, Method

DEFAULT_VIEW_AUGMENT = [{"name": "random_resized_crop", "scale": [0.5, 1.0]},
                        {"name": "color_jitter", "brightness": 0.5, "contrast": 0.4, "saturation": 0.4, "hue": 0.05},
                        {"name": "synthetic_night", "p": 0.3}]


PAPER = "Bardes et al., VICReg, ICLR 2022"


def check_settings(s: dict) -> dict:
    """Validate the ``self_supervised`` section; returns it with defaults filled in."""
    from vpr.data.transforms import check_augment
    s = with_defaults("self_supervised", s, dict(enabled=False, weight=0.3, invariance_lambda=25.0, variance_mu=25.0,
                                                 covariance_v=1.0, expander=[1024, 1024, 1024],
                                                 view_augment=DEFAULT_VIEW_AUGMENT))
    require(isinstance(s["expander"], list) and len(s["expander"]) >= 1
            and all(isinstance(w, int) and w >= 1 for w in s["expander"]), "self_supervised.expander",
            f"must be a list of layer widths, e.g. [1024, 1024, 1024], got {s['expander']!r}")
    require(isinstance(s["enabled"], bool), "self_supervised.enabled", "must be true or false")
    for k in ("weight", "invariance_lambda", "variance_mu", "covariance_v"):
        require(isinstance(s[k], (int, float)) and s[k] >= 0, f"self_supervised.{k}", f"must be >= 0, got {s[k]!r}")
    check_augment(s["view_augment"])
    return s


def vicreg(s: dict) -> VICRegLoss:
    return VICRegLoss(invariance_lambda=s["invariance_lambda"], variance_mu=s["variance_mu"],
                      covariance_v=s["covariance_v"])


def expander(in_dim: int, widths) -> nn.Sequential:
    """VICReg's expander: (Linear, BatchNorm, ReLU) for every width but the last, then Linear."""
    layers, dim = [], in_dim
    for i, width in enumerate(widths):
        layers.append(nn.Linear(dim, width))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        dim = width
    return nn.Sequential(*layers)


class VICRegOnViews(nn.Module):
    """VICReg(expander(embedding of view 1), expander(embedding of view 2)), the embeddings unnormalised."""

    def __init__(self, descriptor_dim: int, settings: dict):
        super().__init__()
        self.expander = expander(descriptor_dim, settings["expander"])
        self.loss = vicreg(settings)

    def forward(self, model, batch, out):
        first = model.embedding(out["features"])
        _, view_features = model(batch["views"], return_features=True)
        return self.loss(self.expander(first), ref_emb=self.expander(model.embedding(view_features)))


class VICRegTerm(VICRegOnViews):
    """Auxiliary loss: weight x VICReg between the two views (see VICRegOnViews)."""

    def __init__(self, descriptor_dim: int, settings: dict):
        super().__init__(descriptor_dim, settings)
        self.weight = settings["weight"]

    def forward(self, model, batch, out):
        loss = super().forward(model, batch, out)
        return self.weight * loss, {"vicreg_loss": loss.item()}


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
        require(2 <= batch_size <= num_images, "methods.self_supervised.batch_size",
                f"must be between 2 and the number of training images ({num_images}), got {batch_size}")
        self.n, self.batch_size, self.seed = num_images, batch_size, seed
        self.batches_per_epoch = batches_per_epoch or num_images // batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.concatenate([rng.permutation(self.n) for _ in range(-(-self.batches_per_epoch * self.batch_size
                                                                          // self.n))])
        for b in range(self.batches_per_epoch):
            yield order[b * self.batch_size:(b + 1) * self.batch_size].tolist()


def self_supervised_method(ctx: Context, *, batch_size: int = 64):
    """Label-free: VICReg between two augmented views of random training images (settings: self_supervised)."""
    from vpr.errors import ConfigError
    if ctx.view_transform is None:
        raise ConfigError("train.method: self_supervised needs the second view; internal error")
    t = ctx.cfg.train
    places = ctx.data.places
    sampler = RandomBatches(len(places.paths), batch_size, ctx.cfg.seed, t.batches_per_epoch)
    objective = VICRegObjective(ctx.model.descriptor_dim, check_settings(ctx.cfg.raw.get("self_supervised")))
    dataset = ctx.dataset(places.paths)

    def batches(epoch: int):
        sampler.set_epoch(epoch)
        return ctx.loader(dataset, sampler, epoch)

    return Method(objective, batches, len(sampler), sampler)
