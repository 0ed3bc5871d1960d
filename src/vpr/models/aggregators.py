"""Aggregators: feature map (B, C, h, w) -> global descriptor (B, D).

Builders take ``(in_channels, feature_hw)`` from the code and their settings as keywords;
the returned module has an ``out_dim`` attribute. L2 normalisation happens in the network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpr.registry import Registry, require

AGGREGATORS = Registry("aggregator", "aggregators")


class AvgPool(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels

    def forward(self, x):
        return x.mean(dim=(2, 3))


class GeM(nn.Module):
    """Generalised mean pooling, (mean x^p)^(1/p), with a learnable p."""

    def __init__(self, in_channels: int, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps
        self.out_dim = in_channels

    def forward(self, x):
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


@AGGREGATORS.register(paper="Babenko & Lempitsky, SPoC, ICCV 2015")
def avg(in_channels: int, feature_hw) -> nn.Module:
    """Global average pooling (the course template's baseline, SPoC)."""
    return AvgPool(in_channels)


@AGGREGATORS.register(paper="Radenovic et al., Fine-tuning CNN Image Retrieval with No Human Annotation, TPAMI 2018")
def gem(in_channels: int, feature_hw, *, p: float = 3.0, learn_p: bool = True) -> nn.Module:
    """Generalized-mean pooling with learnable exponent p."""
    require(p > 0, "aggregators.gem.p", f"must be > 0, got {p}")
    return GeM(in_channels, p=p, learn_p=learn_p)
