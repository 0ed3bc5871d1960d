"""Aggregators: feature map (B, C, h, w) -> global descriptor (B, D).

Builders take ``(in_channels, feature_hw)`` from the code and their settings as keywords; the returned
module has an ``out_dim`` attribute. L2 normalisation of the final descriptor happens in the network.
An aggregator that wants data-driven initialisation (NetVLAD) has ``init_from_local_features``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vpr.registry import Registry

AGGREGATORS = Registry("aggregator")


class AvgPool(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels

    def forward(self, x):
        return x.mean(dim=(2, 3))


class MaxPool(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels

    def forward(self, x):
        return x.amax(dim=(2, 3))


class GeM(nn.Module):
    """Generalised mean pooling, (mean x^p)^(1/p), with a learnable p; ``l2_before``: local features
    L2-normalised over channels first (the benchmark's ``--l2 before_pool``, CosPlace's head)."""

    def __init__(
        self,
        in_channels: int,
        p: float = 3.0,
        eps: float = 1e-6,
        learn_p: bool = True,
        l2_before: bool = False,
    ):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps, self.l2_before = eps, l2_before
        self.out_dim = in_channels

    def forward(self, x):
        if self.l2_before:
            x = F.normalize(x, dim=1)
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class AdaptivePool(nn.Module):
    """Pool to a fixed grid and concatenate the cells (a spatial layout kept in the descriptor)."""

    def __init__(self, in_channels: int, grid, mode: str):
        super().__init__()
        self.pool = (
            nn.AdaptiveAvgPool2d(tuple(grid))
            if mode == "avg"
            else nn.AdaptiveMaxPool2d(tuple(grid))
        )
        self.out_dim = in_channels * grid[0] * grid[1]

    def forward(self, x):
        return F.normalize(self.pool(x), dim=1).flatten(1)


class AttentionPool(nn.Module):
    """Weighted average over positions; the weights are a softmax of a 1x1 convolution of the features."""

    def __init__(self, in_channels: int, temperature: float):
        super().__init__()
        self.score = nn.Conv2d(in_channels, 1, kernel_size=1)
        self.temperature = temperature
        self.out_dim = in_channels

    def forward(self, x):
        weights = torch.softmax(self.score(x).flatten(1) / self.temperature, dim=1)  # (B, hw)
        return torch.einsum("bch,bh->bc", x.flatten(2), weights)


class NetVLAD(nn.Module):
    """NetVLAD: soft-assignment of local features to K clusters, residuals summed per cluster.

    Output K * C values (intra-normalised per cluster, then flattened)."""

    def __init__(self, in_channels: int, clusters: int, alpha: float, normalize_input: bool):
        super().__init__()
        self.clusters, self.alpha, self.normalize_input = clusters, alpha, normalize_input
        self.assign = nn.Conv2d(in_channels, clusters, kernel_size=1, bias=False)
        self.centroids = nn.Parameter(torch.rand(clusters, in_channels))
        self.out_dim = clusters * in_channels
        self.initialized = False

    def init_from_local_features(self, local: np.ndarray, seed: int = 0) -> None:
        """The "vlad" initialisation of the benchmark (and of the NetVLAD paper's code): k-means (faiss, 100
        iterations) on the (L2-normalised) local features; the centroids as k-means gives them; assignment
        weights alpha * L2-normalised centroids and no bias, alpha chosen so that a descriptor's weight on its
        second-nearest cluster is, on average (geometric mean), 1 % of its weight on the nearest."""
        import faiss

        local = np.ascontiguousarray(local, dtype=np.float32)
        if self.normalize_input:
            local /= np.linalg.norm(local, axis=1, keepdims=True) + 1e-12
        kmeans = faiss.Kmeans(local.shape[1], self.clusters, niter=100, seed=seed, verbose=False)
        kmeans.train(local)
        unit = kmeans.centroids / (np.linalg.norm(kmeans.centroids, axis=1, keepdims=True) + 1e-12)
        dots = np.sort(local @ unit.T, axis=1)
        alpha = (-np.log(0.01) / np.mean(dots[:, -1] - dots[:, -2])).item()
        with torch.no_grad():
            self.centroids.copy_(torch.from_numpy(kmeans.centroids))
            self.assign.weight.copy_(torch.from_numpy(alpha * unit)[:, :, None, None])
        self.alpha, self.initialized = alpha, True

    def forward(self, x):
        if self.normalize_input:
            x = F.normalize(x, dim=1)
        soft = torch.softmax(self.assign(x).flatten(2), dim=1)  # (B, K, hw)
        local = x.flatten(2)  # (B, C, hw)
        vlad = (
            torch.einsum("bkn,bcn->bkc", soft, local)
            - soft.sum(2).unsqueeze(2) * self.centroids[None]
        )
        return F.normalize(vlad, dim=2).flatten(1)


class FeatureMixer(nn.Module):
    def __init__(self, positions: int, mlp_ratio: float):
        super().__init__()
        hidden = int(positions * mlp_ratio)
        self.mix = nn.Sequential(
            nn.LayerNorm(positions),
            nn.Linear(positions, hidden),
            nn.ReLU(),
            nn.Linear(hidden, positions),
        )
        for m in self.mix:  # as the reference's FeatureMixerLayer
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return x + self.mix(x)


class MixVPR(nn.Module):
    """MixVPR: flattened feature maps mixed by MLPs across positions, then projected along channels
    and rows: out_channels * out_rows values."""

    def __init__(
        self,
        in_channels: int,
        feature_hw,
        mix_depth: int,
        mlp_ratio: float,
        out_channels: int,
        out_rows: int,
    ):
        super().__init__()
        positions = feature_hw[0] * feature_hw[1]
        self.mixers = nn.Sequential(*[FeatureMixer(positions, mlp_ratio) for _ in range(mix_depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(positions, out_rows)
        self.positions = positions
        self.out_dim = out_channels * out_rows

    def forward(self, x):
        if x.shape[2] * x.shape[3] != self.positions:
            raise ValueError(
                f"MixVPR was built for {self.positions} feature positions, got "
                f"{x.shape[2]}x{x.shape[3]}: extract at the training image size"
            )
        x = self.mixers(x.flatten(2))  # (B, C, hw)
        x = self.channel_proj(x.permute(0, 2, 1))  # (B, hw, out_channels)
        x = self.row_proj(x.permute(0, 2, 1))  # (B, out_channels, out_rows)
        return x.flatten(1)


class CosPlaceHead(nn.Module):
    """CosPlace head: L2 over channels -> GeM -> fully connected -> (L2 in the network)."""

    def __init__(self, in_channels: int, p: float, fc_output_dim: int):
        super().__init__()
        self.gem = GeM(in_channels, p, l2_before=True)
        self.fc = nn.Linear(in_channels, fc_output_dim)
        self.out_dim = fc_output_dim

    def forward(self, x):
        return self.fc(self.gem(x))


class ConvAP(nn.Module):
    """Conv-AP: 1x1 convolution to out_channels, adaptive average pooling to an s1 x s2 grid, flattened."""

    def __init__(self, in_channels: int, out_channels: int, s1: int, s2: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d((s1, s2))
        self.out_dim = out_channels * s1 * s2

    def forward(self, x):
        return self.pool(self.reduce(x)).flatten(1)


@AGGREGATORS.register()
def avg(in_channels: int, feature_hw) -> nn.Module:
    return AvgPool(in_channels)


@AGGREGATORS.register("max")
def max_(in_channels: int, feature_hw) -> nn.Module:
    return MaxPool(in_channels)


@AGGREGATORS.register()
def gem(in_channels: int, feature_hw, *, p: float, learn_p: bool, l2: str) -> nn.Module:
    return GeM(in_channels, p=p, learn_p=learn_p, l2_before=l2 == "before_pool")


@AGGREGATORS.register()
def adaptive(in_channels: int, feature_hw, *, grid: list, mode: str) -> nn.Module:
    return AdaptivePool(in_channels, grid, mode)


@AGGREGATORS.register()
def attention(in_channels: int, feature_hw, *, temperature: float) -> nn.Module:
    return AttentionPool(in_channels, temperature)


@AGGREGATORS.register()
def netvlad(
    in_channels: int, feature_hw, *, clusters: int, normalize_input: bool, init_images: int
) -> nn.Module:
    module = NetVLAD(in_channels, clusters, alpha=100.0, normalize_input=normalize_input)
    module.init_images = init_images
    return module


@AGGREGATORS.register()
def mixvpr(
    in_channels: int,
    feature_hw,
    *,
    mix_depth: int,
    mlp_ratio: float,
    out_channels: int,
    out_rows: int,
) -> nn.Module:
    return MixVPR(in_channels, feature_hw, mix_depth, mlp_ratio, out_channels, out_rows)


@AGGREGATORS.register()
def cosplace(in_channels: int, feature_hw, *, p: float, fc_output_dim: int) -> nn.Module:
    return CosPlaceHead(in_channels, p, fc_output_dim)


@AGGREGATORS.register()
def convap(in_channels: int, feature_hw, *, out_channels: int, s1: int, s2: int) -> nn.Module:
    return ConvAP(in_channels, out_channels, s1, s2)
