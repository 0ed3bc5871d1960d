"""vpr: visual place recognition by image retrieval (library; knows nothing of DVC)."""
from vpr import compat as _compat  # noqa: F401  (torchvision shim must run before any torchvision import)

__version__ = "0.1.0"
