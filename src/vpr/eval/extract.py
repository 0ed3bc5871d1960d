"""Descriptor extraction: a model and a list of images -> (n, D) float32 L2-normalised descriptors."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm import tqdm

from vpr.data.datasets import PreparedImages
from vpr.eval.descriptors import fuse_scales
from vpr.eval.prepare import ImagePrep, size_batches
from vpr.models.backbones import IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def compute_descriptors(
    model: torch.nn.Module,
    paths,
    prep=None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    desc: str = "extracting",
    scales=(1.0,),
    fusion: str = "avg",
    crops: str = "mean",
) -> np.ndarray:
    """Descriptors of ``paths`` in order. ``prep``: how an image becomes the input (vpr.eval.prepare.ImagePrep:
    size and policy; a plain (H, W) stretches to it, None keeps native sizes; or a vpr.eval.query_methods.FiveCrops,
    whose five crops give their mean (``crops: mean``) or five rows per image (``all``)). Images of the same input
    size are batched together. Multi-scale testing: each image is prepared again from the decoded image at every
    factor of ``scales`` and the descriptors are fused by ``fusion`` (avg | sum | max | min), re-normalised."""
    prep = prep if hasattr(prep, "resized") else ImagePrep.of(prep)
    if list(scales) == [1.0]:
        return _one_scale(model, paths, prep, batch_size, num_workers, device, desc, crops)
    per_scale = [
        _one_scale(
            model, paths, prep.at_scale(s), batch_size, num_workers, device, f"{desc} x{s:g}", crops
        )
        for s in scales
    ]
    return fuse_scales(torch.from_numpy(np.stack(per_scale)), fusion).numpy()


def _describe_batch(model, images: torch.Tensor, crops: str) -> tuple[np.ndarray, int]:
    """Descriptors of a batch (B, 3, H, W), or of its crops (B, C, 3, H, W): their mean, or every crop's
    (rows image-major); and the rows per image."""
    if images.ndim == 4:
        return model(images).float().cpu().numpy(), 1
    b, c = images.shape[:2]
    d = model(images.flatten(0, 1)).float().reshape(b, c, -1)
    return (d.mean(1).cpu().numpy(), 1) if crops == "mean" else (d.flatten(0, 1).cpu().numpy(), c)


def _one_scale(
    model, paths, prep, batch_size: int, num_workers: int, device: str, desc: str, crops: str
):
    was_training = model.training
    model.eval()
    # Workers decode (JPEG draft mode) and resize to uint8, a quarter of the bytes of float32 to pass on;
    # the batch becomes float and normalised here, in one vectorised step.
    mean, std = (
        list(getattr(model, "mean", IMAGENET_MEAN)),
        list(getattr(model, "std", IMAGENET_STD)),
    )
    loader = DataLoader(
        PreparedImages(paths, prep),
        batch_sampler=size_batches(paths, prep, batch_size),
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=torch.device(device).type == "cuda",
    )
    out = None
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar:
        for images, idx in loader:
            images = v2.functional.normalize(
                v2.functional.to_dtype(
                    images.to(device, non_blocking=True), torch.float32, scale=True
                ),
                mean,
                std,
            )
            d, rows = _describe_batch(model, images, crops)
            if out is None:
                out = np.empty((len(paths) * rows, d.shape[1]), dtype=np.float32)
            out[(idx.numpy()[:, None] * rows + np.arange(rows)).ravel()] = d
            bar.update(len(idx))
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), np.float32)


def describe(
    models,
    parts: dict,
    prep=None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    scales=(1.0,),
    fusion: str = "avg",
    pca: dict | None = None,
    pca_train_paths=None,
    query_method: str = "single",
) -> dict:
    """Descriptors of every list of paths in ``parts`` ({name: paths}) by an ensemble of ``models``
    ([(model, weight)]; one model = plain extraction), with multi-scale fusion and optional PCA. The
    ``queries`` part is prepared by ``query_method`` (vpr.eval.query_methods; five rows per query for
    nearest_crop and maj_voting), every other part by ``prep``.

    PCA is fitted on ``pca_train_paths`` (``fit_on: train``, the default) or, when asked for explicitly, on the
    ``database`` part itself (transductive: a warning says so)."""
    from vpr.eval.descriptors import PCA, concat_ensemble
    from vpr.eval.query_methods import query_prep

    prep = ImagePrep.of(prep)

    def run(paths, label):
        part_prep = query_prep(prep, query_method) if label == "queries" else prep
        crops = "mean" if query_method == "five_crops" else "all"
        per_model = [
            compute_descriptors(
                m,
                paths,
                part_prep,
                batch_size,
                num_workers,
                device,
                desc=f"{label} ({i + 1}/{len(models)})" if len(models) > 1 else label,
                scales=scales,
                fusion=fusion,
                crops=crops,
            )
            for i, (m, _) in enumerate(models)
        ]
        return (
            per_model[0] if len(models) == 1 else concat_ensemble(per_model, [w for _, w in models])
        )

    out = {name: run(paths, name) for name, paths in parts.items()}
    if pca and pca.get("dim") and pca["fit_on"] == "database":
        import warnings

        from vpr.errors import DataWarning

        warnings.warn(
            "extract.pca.fit_on: database fits the PCA on the very database being evaluated "
            "(transductive: its recall is not comparable to a PCA fitted on training images, fit_on: "
            "train)",
            DataWarning,
        )
    if pca and pca.get("dim"):
        fit_on = (
            out["database"]
            if pca["fit_on"] == "database"
            else run(pca_train_paths, "PCA training images")
        )
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
