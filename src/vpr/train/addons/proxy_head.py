"""GPM's proxy head (vpr.data.samplers.GlobalProxySampler): a loss term that learns the place proxies the
sampler builds its batches from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from vpr.data.samplers import GlobalProxySampler


class ProxyHeadTerm(nn.Module):
    """GPM's proxy head: a linear map of the (detached) descriptors trained with a multi-similarity loss,
    so it does not disturb the main network; its outputs feed the sampler's place proxies."""

    def __init__(self, sampler: GlobalProxySampler, descriptor_dim: int, proxy_dim: int):
        super().__init__()
        from pytorch_metric_learning.losses import MultiSimilarityLoss

        self.sampler = [sampler]  # a list, so the sampler is not registered as a sub-module
        self.head = nn.Linear(descriptor_dim, proxy_dim)
        self.loss = MultiSimilarityLoss(alpha=1.0, beta=50.0, base=0.0)

    def forward(self, model, batch, out):
        proxies = F.normalize(self.head(out["descriptors"].detach()), dim=1)
        self.sampler[0].record(batch["labels"], proxies)
        loss = self.loss(proxies, batch["labels"])
        return loss, {"proxy_loss": loss.item()}
