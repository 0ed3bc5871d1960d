"""Domain adaptation with a gradient-reversal layer (Ganin & Lempitsky, ICML 2015).

A small domain classifier looks at the (globally pooled) backbone features of the training batch (source,
label 0) and of as many unlabeled target-domain images (e.g. night photos, label 1). The gradient-reversal
layer passes features unchanged forward and multiplies the gradient by -lambda backward, so the classifier
learns to tell the domains apart while the backbone learns features that it cannot: domain-invariant ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

from vpr.errors import require
from vpr.train.autograd import scale_gradient


class GradientReversal(nn.Module):
    """Identity forward, gradient times -lambda backward. ``schedule: ganin``: lambda grows with the training
    progress p (0 -> 1) as lambda_max * (2 / (1 + exp(-10 p)) - 1) (Ganin & Lempitsky 2015, sec. 5), so the
    domain classifier's noisy early gradients barely reach the backbone; ``constant``: lambda_max throughout.
    The step count is a buffer: it is saved in checkpoints and a resumed run continues the schedule."""

    def __init__(self, lambda_: float = 1.0, schedule: str = "constant", total_steps: int = 1):
        super().__init__()
        self.lambda_max, self.schedule, self.total_steps = lambda_, schedule, max(1, total_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def lambda_(self) -> float:
        if self.schedule == "constant":
            return self.lambda_max
        p = min(1.0, self.step.item() / self.total_steps)
        return self.lambda_max * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)

    def forward(self, x):
        coefficient = self.lambda_
        if self.training:
            self.step += 1
        return scale_gradient(x, -coefficient)


class DomainAdversarialTerm(nn.Module):
    """weight x BCE(domain classifier(GRL(pooled backbone features)), source 0 / target 1)."""

    def __init__(self, channels: int, settings: dict, total_steps: int = 1):
        super().__init__()
        self.weight = settings["weight"]
        self.reverse = GradientReversal(
            settings["grl_lambda"], settings["grl_schedule"], total_steps
        )
        self.classifier = nn.Sequential(
            nn.Linear(channels, settings["hidden"]), nn.ReLU(), nn.Linear(settings["hidden"], 1)
        )

    def forward(self, model, batch, out):
        _, target_features = model(batch["target_images"], return_features=True)
        pooled = torch.cat([out["features"].mean(dim=(2, 3)), target_features.mean(dim=(2, 3))])
        domain = torch.cat(
            [torch.zeros(len(out["features"])), torch.ones(len(target_features))]
        ).to(pooled.device)
        logits = self.classifier(self.reverse(pooled)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits, domain)
        accuracy = ((logits > 0).float() == domain).float().mean().item()
        return self.weight * loss, {
            "domain_loss": loss.item(),
            "domain_accuracy": accuracy,
            "grl_lambda": self.reverse.lambda_,
        }


class TargetBatches(Sampler):
    """Batches of target images, as many as the source batch holds (balanced), cycling through an
    epoch-seeded permutation of the target set."""

    def __init__(self, num_images: int, batch_size: int, seed: int):
        require(num_images >= 1, "data.target", "the target folder has no images")
        self.n, self.batch_size, self.seed, self.epoch = num_images, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        order = rng.permutation(self.n)
        i = 0
        while True:
            batch = [int(order[(i + k) % self.n]) for k in range(self.batch_size)]
            i += self.batch_size
            yield batch


def with_target_images(batches, ctx, target_paths):
    """Wrap a method's batch provider so every batch also carries ``target_images`` (same count)."""
    from vpr.train.context import TrainImages

    dataset = TrainImages(target_paths, None, ctx.transform)

    def wrapped(epoch: int):
        for batch in batches(epoch):
            sampler = wrapped.samplers.setdefault(
                len(batch["images"]),
                TargetBatches(len(dataset), len(batch["images"]), ctx.cfg.seed),
            )
            if sampler.epoch != epoch or not hasattr(sampler, "stream"):
                sampler.set_epoch(epoch)
                sampler.stream = iter(ctx.loader(dataset, sampler, epoch))
            batch["target_images"] = next(sampler.stream)["images"]
            yield batch

    wrapped.samplers = {}
    return wrapped
