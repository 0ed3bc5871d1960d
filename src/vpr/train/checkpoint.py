"""Checkpoints: state dicts and plain metadata only, so they load with ``weights_only=True``."""
from __future__ import annotations

import os

import torch

from vpr.errors import DataError
from vpr.io import atomic_path


def save_checkpoint(path: str | os.PathLike, **content) -> None:
    """Atomically write ``content`` (tensors, state dicts, plain python values)."""
    with atomic_path(path) as tmp:
        torch.save(content, tmp)


def load_checkpoint(path) -> dict:
    """A checkpoint from a path (or an open binary file)."""
    if hasattr(path, "read"):
        return torch.load(path, map_location="cpu", weights_only=True)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: checkpoint not found; run the train stage first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file: one message
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}); delete it and retrain") from None


def load_model(path):
    """Rebuild the network saved in a checkpoint; returns (model, checkpoint dict)."""
    from vpr.models.network import build_model
    ckpt = load_checkpoint(path)
    spec = dict(ckpt["spec"])
    # The saved weights replace any pretrained ones: never download them again just to overwrite them.
    spec["backbone_settings"] = {**spec["backbone_settings"], **(
        {"pretrained": False} if "pretrained" in spec["backbone_settings"] else {})}
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    model.to(memory_format=torch.channels_last)   # faster convolutions for inference (CPU and CUDA)
    model.eval()
    return model, ckpt
