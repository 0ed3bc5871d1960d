"""VICReg (Bardes et al., ICLR 2022) between two augmented views of each training image, with
pytorch-metric-learning's VICRegLoss. As in the paper, the loss reads the output of an *expander* (Linear,
BatchNorm, ReLU, ..., Linear) over the unnormalised global descriptors, where its variance target (std 1 per
dimension) is reachable; the L2-normalised descriptors used for retrieval are left to the place loss.
As an add-on (``self_supervised.enabled``) it is weighted into any method's loss; the label-free method
(vpr.train.methods.self_supervised) uses it alone. The second view uses ``self_supervised.view_augment``.
"""

from __future__ import annotations

from pytorch_metric_learning.losses import VICRegLoss
from torch import nn


def vicreg(s: dict) -> VICRegLoss:
    return VICRegLoss(
        invariance_lambda=s["invariance_lambda"],
        variance_mu=s["variance_mu"],
        covariance_v=s["covariance_v"],
    )


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
        return self.loss(
            self.expander(first), ref_emb=self.expander(model.embedding(view_features))
        )


class VICRegTerm(VICRegOnViews):
    """Auxiliary loss: weight x VICReg between the two views (see VICRegOnViews)."""

    def __init__(self, descriptor_dim: int, settings: dict):
        super().__init__(descriptor_dim, settings)
        self.weight = settings["weight"]

    def forward(self, model, batch, out):
        loss = super().forward(model, batch, out)
        return self.weight * loss, {"vicreg_loss": loss.item()}
