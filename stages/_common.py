"""Shared by the stage scripts: find the library, validate what the stage reads, report errors in one line."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the library of *this* checkout, installed or not
os.chdir(ROOT)


def load_config(stage: str):
    """params.yaml, validated as far as ``stage`` reads it (vpr.config.READS)."""
    from vpr.config import load_config as load
    return load(ROOT / "params.yaml", stage)


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
