"""What a result was computed with: the CPU kernels torch dispatches to and the numeric libraries' versions.

Float rounding differs between CPU kinds (AVX-512 vs AVX2 kernels) and library versions, and over a few
epochs of training such differences grow into points of recall: recorded in the train metrics, they show in
`dvc exp show` why two machines disagree. Same machine kind + same versions = bit-identical results.
"""

from __future__ import annotations

import platform


def environment() -> dict:
    import faiss
    import numpy
    import PIL
    import simplejpeg
    import torch

    return dict(
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        torch=torch.__version__,
        numpy=numpy.__version__,
        pillow=PIL.__version__,
        simplejpeg=simplejpeg.__version__,
        faiss=faiss.__version__,
        python=platform.python_version(),
        machine=platform.machine(),
        cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    )
