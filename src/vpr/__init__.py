"""vpr: visual place recognition by image retrieval (library; knows nothing of DVC)."""

from vpr import compat as _compat

_compat.install()  # the torchvision shim, applied on its first import (cheap until then)

__version__ = "0.1.0"
