"""Make ``import torchvision`` work when its compiled ops do not match the installed torch.

The torchvision 0.28.0 wheel's ``_C.so`` does not load against the local CPU build of
torch 2.13.0; torchvision then dies registering fake kernels for ``torchvision::nms`` and
``torchvision::qnms``. Declaring those two schemas first (only when the extension really
cannot load) lets the pure-Python parts we use (models, transforms) import.

``install()`` (run by ``import vpr``) puts a finder first on ``sys.meta_path`` that applies the shim the
moment anything (our modules, pytorch-metric-learning, timm) first imports torchvision. So the shim
lives in one place (a module of ours just writes ``import torchvision``), and ``import vpr`` stays cheap:
light stages (evaluate, tables, pictures) never pay for importing torch and torchvision.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_libraries: list = []  # keep the Library objects alive: dropping them unregisters the ops


def _extension_loads() -> bool:
    import torch

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
    import torch

    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        library.define(schema)
    _libraries.append(library)


class _ShimBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Applies the shim when torchvision is first imported, then lets the normal finders load it."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
            patch_torchvision()
        return None


def install() -> None:
    if "torchvision" not in sys.modules and not any(
        isinstance(f, _ShimBeforeTorchvision) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _ShimBeforeTorchvision())
