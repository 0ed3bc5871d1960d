"""Where torch runs: ``auto`` | ``cpu`` | ``cuda`` (train.device, extract.device, localize --device)."""

from __future__ import annotations

import os

from vpr.errors import ConfigError


def resolve_device(name: str, key: str = "device") -> str:
    """The device to use; all CPU cores for torch; one line naming ``key`` when CUDA is asked for but absent."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{key}: cuda was asked for but no CUDA device is visible; use auto or cpu"
        )
    return name
