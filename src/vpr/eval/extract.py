"""Descriptor extraction: a model and a list of images -> (n, D) float32 L2-normalised descriptors."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vpr.data.datasets import ImageList
from vpr.data.transforms import eval_transform
from vpr.models.backbones import IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def compute_descriptors(model: torch.nn.Module, paths, image_size=None, batch_size: int = 64,
                        num_workers: int = 0, device: str = "cpu", desc: str = "extracting") -> np.ndarray:
    """Descriptors of ``paths`` in order. ``image_size`` (H, W) resizes; None keeps native sizes
    (then images are fed one at a time, as the reference code does for queries of mixed sizes)."""
    was_training = model.training
    model.eval()
    transform = eval_transform(image_size, getattr(model, "mean", IMAGENET_MEAN), getattr(model, "std", IMAGENET_STD))
    loader = DataLoader(ImageList(paths, transform, draft_size=image_size), batch_size=batch_size if image_size else 1,
                        num_workers=num_workers, persistent_workers=False, pin_memory=torch.device(device).type == "cuda")
    out = None
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar:
        for images, idx in loader:
            d = model(images.to(device, non_blocking=True)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(paths), d.shape[1]), dtype=np.float32)
            out[idx.numpy()] = d
            bar.update(len(idx))
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), np.float32)
