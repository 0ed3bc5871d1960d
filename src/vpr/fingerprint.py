"""Which weights made some descriptors: an md5 of the model's tensors.

Not of the checkpoint file, whose bytes also hold the optimizer state, the epoch and the archive name
(best.pt and last.pt of the same epoch differ as files, not as weights).
"""
from __future__ import annotations

import hashlib


def weights_md5(model) -> str:
    import torch

    h = hashlib.md5()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
