"""Descriptor post-processing at test time: multi-scale fusion, model ensembles, PCA (with whitening)."""

from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from vpr.errors import require

FUSIONS = ("avg", "sum", "max", "min")


def fuse_scales(per_scale: torch.Tensor, rule: str) -> torch.Tensor:
    """(S, B, D) descriptors of the same images at S scales -> (B, D), fused by ``rule``, L2-normalised.

    (avg and sum differ only before the final normalisation; both are offered as the reports used both.)"""
    require(rule in FUSIONS, "extract.fusion", f"'{rule}' is not one of {', '.join(FUSIONS)}")
    fused = {
        "avg": per_scale.mean,
        "sum": per_scale.sum,
        "max": lambda dim: per_scale.amax(dim),
        "min": lambda dim: per_scale.amin(dim),
    }[rule](0)
    return F.normalize(fused, p=2, dim=1)


def concat_ensemble(descriptors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Concatenate the L2-normalised descriptors of several models, each scaled by its weight, re-normalised."""
    parts = [
        w * d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-12)
        for d, w in zip(descriptors, weights)
    ]
    out = np.concatenate(parts, axis=1).astype(np.float32)
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)


class PCA:
    """faiss PCA to ``dim`` dimensions; ``whiten`` divides each component by its standard deviation."""

    def __init__(self, fit_on: np.ndarray, dim: int, whiten: bool = False):
        fit_on = np.ascontiguousarray(fit_on, dtype=np.float32)
        require(
            1 <= dim <= min(fit_on.shape),
            "extract.pca.dim",
            f"must be between 1 and min(samples, descriptor size) = {min(fit_on.shape)}, got {dim}",
        )
        self.matrix = faiss.PCAMatrix(fit_on.shape[1], dim, -0.5 if whiten else 0.0)
        self.matrix.train(fit_on)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.matrix.apply(np.ascontiguousarray(x, dtype=np.float32))
        return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)
