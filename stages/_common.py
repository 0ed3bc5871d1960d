"""Shared by the stage scripts: find the library, report errors in one line, use all cores."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the library of *this* checkout, installed or not
os.chdir(ROOT)


def load_config():
    """params.yaml, validated; the full checks run once per params and code (stamps in .cache/, git-ignored)."""
    from vpr.config import load_config as load
    return load(ROOT / "params.yaml", stamps=ROOT / ".cache" / "validated-params")


def run(main) -> None:
    """Call ``main()``; a VPRError becomes ``error: <message>`` on stderr and exit status 2."""
    import warnings

    from vpr.errors import DataWarning, VPRError
    default_show = warnings.showwarning

    def show(message, category, *args, **kwargs):  # data warnings as one line, like errors
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            default_show(message, category, *args, **kwargs)

    warnings.showwarning = show
    warnings.simplefilter("always", DataWarning)
    try:
        main()
    except VPRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def setup_torch(device: str = "auto") -> str:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from vpr.errors import ConfigError
        raise ConfigError("device: cuda was asked for but no CUDA device is visible; use auto or cpu")
    return device
