"""Reading checkpoints (vpr.train.checkpoint writes them): the network a checkpoint holds, rebuilt from its spec,
and which weights they are.

A checkpoint holds state dicts and plain metadata only, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os

import torch

from vpr.errors import DataError


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
        raise DataError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}); delete it and retrain"
        ) from None


def load_model(path):
    """Rebuild the network saved in a checkpoint; returns (model, checkpoint dict)."""
    from vpr.models.network import build_model, check_spec

    ckpt = load_checkpoint(path)
    spec = check_spec(ckpt["spec"])
    # The saved weights replace any pretrained ones: never download them again just to overwrite them.
    spec["backbone_settings"] = {
        **spec["backbone_settings"],
        **({"pretrained": False} if "pretrained" in spec["backbone_settings"] else {}),
    }
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    model.to(memory_format=torch.channels_last)  # faster convolutions for inference (CPU and CUDA)
    model.eval()
    return model, ckpt


def weights_md5(model) -> str:
    """Which weights made some descriptors: an md5 of the model's tensors. Not of the checkpoint file, whose bytes
    also hold the optimizer state, the epoch and the archive name (best.pt and last.pt of the same epoch differ as
    files, not as weights)."""
    h = hashlib.md5()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
