"""Make ``import torchvision`` work when its compiled ops do not match the installed torch.

The torchvision 0.28.0 wheel's ``_C.so`` does not load against the local CPU build of
torch 2.13.0; torchvision then dies registering fake kernels for ``torchvision::nms`` and
``torchvision::qnms``. Declaring those two schemas first (only when the extension really
cannot load) lets the pure-Python parts we use (models, transforms) import. Every module
of this package imports torchvision through here, so the shim lives in one place.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_libraries: list = []  # keep the Library objects alive: dropping them unregisters the ops


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # not installed: let the real import raise its own error
    for name in os.listdir(os.path.dirname(spec.origin)):
        if name.startswith("_C.") and name.endswith((".so", ".pyd")):
            try:
                torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), name))
                return True
            except (OSError, ImportError, RuntimeError):
                return False
    return False


def patch_torchvision() -> None:
    """Declare the missing op schemas if (and only if) torchvision's extension cannot load."""
    if "torchvision" in sys.modules or _libraries or _extension_loads():
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        library.define(schema)
    _libraries.append(library)


patch_torchvision()
import torchvision  # noqa: E402,F401  (re-exported for callers)
