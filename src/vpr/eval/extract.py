"""Descriptor extraction: a model and a list of images -> (n, D) float32 L2-normalised descriptors."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from vpr.data.datasets import PreparedImages
from vpr.compat import torchvision  # noqa: F401  (shim first)
from torchvision.transforms import v2
from vpr.eval.descriptors import fuse_scales
from vpr.eval.prepare import ImagePrep, size_batches
from vpr.models.backbones import IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def compute_descriptors(model: torch.nn.Module, paths, prep=None, batch_size: int = 64,
                        num_workers: int = 0, device: str = "cpu", desc: str = "extracting", scales=(1.0,),
                        fusion: str = "avg") -> np.ndarray:
    """Descriptors of ``paths`` in order. ``prep``: how an image becomes the input (vpr.eval.prepare.ImagePrep:
    size and policy; a plain (H, W) stretches to it, None keeps native sizes). Images of the same input size
    are batched together. Multi-scale testing: each image is also resized by every factor in ``scales`` and
    the descriptors are fused by ``fusion`` (avg | sum | max | min), then re-normalised."""
    prep = ImagePrep.of(prep)
    was_training = model.training
    model.eval()
    # Workers decode (JPEG draft mode) and resize to uint8, a quarter of the bytes of float32 to pass on;
    # the batch becomes float and normalised here, in one vectorised step.
    mean, std = list(getattr(model, "mean", IMAGENET_MEAN)), list(getattr(model, "std", IMAGENET_STD))
    loader = DataLoader(PreparedImages(paths, prep), batch_sampler=size_batches(paths, prep, batch_size),
                        num_workers=num_workers, persistent_workers=False,
                        pin_memory=torch.device(device).type == "cuda")
    out = None
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar:
        for images, idx in loader:
            images = v2.functional.normalize(v2.functional.to_dtype(images.to(device, non_blocking=True),
                                                                    torch.float32, scale=True), mean, std)
            if list(scales) == [1.0]:
                d = model(images).float().cpu().numpy()
            else:
                per_scale = [model(_rescale(images, s)).float() for s in scales]
                d = fuse_scales(torch.stack(per_scale), fusion).cpu().numpy()
            if out is None:
                out = np.empty((len(paths), d.shape[1]), dtype=np.float32)
            out[idx.numpy()] = d
            bar.update(len(idx))
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), np.float32)


def _rescale(images: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1.0:
        return images
    h, w = images.shape[-2:]
    size = (max(16, round(h * factor)), max(16, round(w * factor)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)


def describe(models, parts: dict, prep=None, batch_size: int = 64, num_workers: int = 0, device: str = "cpu",
             scales=(1.0,), fusion: str = "avg", pca: dict | None = None, pca_train_paths=None) -> dict:
    """Descriptors of every list of paths in ``parts`` ({name: paths}) by an ensemble of ``models``
    ([(model, weight)]; one model = plain extraction), with multi-scale fusion and optional PCA.

    PCA is fitted on the ``database`` part (``fit_on: database``) or on ``pca_train_paths``."""
    from vpr.eval.descriptors import PCA, concat_ensemble

    def run(paths, label):
        per_model = [compute_descriptors(m, paths, prep, batch_size, num_workers, device,
                                         desc=f"{label} ({i + 1}/{len(models)})" if len(models) > 1 else label,
                                         scales=scales, fusion=fusion) for i, (m, _) in enumerate(models)]
        return per_model[0] if len(models) == 1 else concat_ensemble(per_model, [w for _, w in models])

    out = {name: run(paths, name) for name, paths in parts.items()}
    if pca and pca.get("dim"):
        fit_on = out["database"] if pca["fit_on"] == "database" else run(pca_train_paths, "PCA training images")
        reduce = PCA(fit_on, pca["dim"], pca["whiten"])
        out = {name: reduce(d) for name, d in out.items()}
    return out


def save_features(out_dir, descriptors: dict, dtype: str, info: dict) -> None:
    """``{part}.npy`` per part (e.g. database, queries) stored as ``dtype`` (float16: half the bytes; evaluate
    memory-maps them) plus ``info.json``, replacing ``out_dir`` atomically."""
    import os

    from vpr.io import atomic_dir, write_json
    with atomic_dir(out_dir) as tmp:
        for part, d in descriptors.items():
            np.save(os.path.join(tmp, f"{part}.npy"), d.astype(dtype, copy=False))
        write_json(os.path.join(tmp, "info.json"), dict(info, dtype=dtype))
