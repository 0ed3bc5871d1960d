"""The float32 distance product of exact search (vpr.eval.knn.flat_search), by the fastest GEMM in the process.

Squared L2 distances ‖q‖² + ‖d‖² − 2 q·d of a block of queries to a block of database rows are one matrix
product of augmented rows, [−2q, ‖q‖², 1] · [d, 1, ‖d‖²] (``augment``: two more columns), written straight into
the caller's preallocated float32 array: no pass over the distances after the product. Three libraries can
compute it, and which is fastest depends on the CPU and on how each was built (e.g. on AMD Zen 4 numpy's
OpenBLAS runs AVX-512 kernels, torch's MKL and faiss's older OpenBLAS AVX2 ones):

- ``numpy``: ``np.matmul(..., out=)`` (numpy's BLAS, its own threads);
- ``torch``: ``torch.mm(..., out=)`` on the same memory (torch's BLAS, ``torch.get_num_threads()`` threads);
  a candidate only once the process has imported torch (importing it for this would cost more than it saves,
  and the light pipeline stages run without torch);
- ``faiss``: ``faiss.pairwise_L2sqr`` (faiss's BLAS sgemm onto the preloaded norms, OpenMP threads), reading
  the plain columns of the augmented rows.

``backend()`` picks it: ``$VPR_GEMM`` (numpy, torch, faiss; auto or unset: measure) or else the fastest on a
representative product of this process's dimension (``_PROBE_QUERIES`` x ``_PROBE_ROWS``), each backend timed
in turn, best of ``_ROUNDS`` after a warm-up call, once per process (cached). Each library keeps its own thread
count. Every backend computes the same formula in float32; only the rounding order of the sums differs, so
the top-k agree up to ties (exact ties, e.g. small integer vectors, stay exact).
"""
from __future__ import annotations

import os
import sys
import time

import faiss
import numpy as np

from vpr.errors import ConfigError

BACKENDS = ("numpy", "torch", "faiss")
ENV = "VPR_GEMM"
_PROBE_QUERIES = 256      # the measured product: queries x database rows (x the search's dimension)
_PROBE_ROWS = 2048
_ROUNDS = 3
_chosen: str | None = None


def available() -> list[str]:
    """The backends this process can use without importing anything more (torch only once imported)."""
    return [name for name in BACKENDS if name != "torch" or "torch" in sys.modules]


def backend(name: str | None = None, dim: int = 512) -> str:
    """The GEMM to use: ``name`` if given, else ``$VPR_GEMM``, else the fastest measured (once per process, on a
    product of ``dim`` dimensions)."""
    global _chosen
    source = "gemm" if name else ENV
    name = (name or os.environ.get(ENV, "")).strip().lower() or "auto"
    if name in BACKENDS:
        return name
    if name != "auto":
        raise ConfigError(f"{source}={name!r}: unknown GEMM backend; choose {', '.join(BACKENDS)} or auto")
    if _chosen is None:
        _chosen = fastest(dim)
    return _chosen


def fastest(dim: int, candidates: list[str] | None = None) -> str:
    """The backend with the shortest product of the probe's shape, best of ``_ROUNDS`` after a warm-up. Each
    backend runs all its calls in a row, so none pays for another's threads still spinning after a call."""
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((_PROBE_QUERIES, dim), np.float32)
    rows = augment(rng.standard_normal((_PROBE_ROWS, dim), np.float32))
    aug, out = augment(queries, query=True), np.empty((_PROBE_QUERIES, _PROBE_ROWS), np.float32)
    best = {}
    for name in candidates or available():
        times = []
        for _ in range(_ROUNDS + 1):
            start = time.perf_counter()
            distances(name, queries, aug, rows, out)
            times.append(time.perf_counter() - start)
        best[name] = min(times[1:])
    return min(best, key=best.get)


def augment(rows: np.ndarray, query: bool = False, out: np.ndarray | None = None, pool=None,
            step: int = 512) -> np.ndarray:
    """Float32 rows with two more columns: [−2q, ‖q‖², 1] for queries, [d, 1, ‖d‖²] for database rows (into
    ``out[:len(rows)]`` if given; any float dtype in, converted here), ``step`` rows at a time (the norms
    are taken while the copy is in cache), on ``pool``'s threads if given."""
    n, dim = rows.shape
    out = np.empty((n, dim + 2), np.float32) if out is None else out[:n]
    norm, one = (dim, dim + 1) if query else (dim + 1, dim)

    def part(lo: int) -> None:
        values = out[lo:lo + step, :dim]
        np.copyto(values, rows[lo:lo + step], casting="same_kind")
        np.einsum("ij,ij->i", values, values, out=out[lo:lo + step, norm])
        if query:
            values *= np.float32(-2)                  # exact: a power of two

    out[:, one] = 1
    list(pool.map(part, range(0, n, step)) if pool is not None else map(part, range(0, n, step)))
    return out


def distances(name: str, queries: np.ndarray, aug: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out`` (len(queries) x len(rows), C-contiguous float32) = squared L2 distances of the queries (float32,
    C-contiguous; ``aug`` = augment(queries, query=True)) to the augmented database ``rows``, by backend ``name``."""
    if name == "numpy":
        np.matmul(aug, rows.T, out=out)
    elif name == "torch":
        import torch
        torch.mm(torch.from_numpy(aug), torch.from_numpy(rows).T, out=torch.from_numpy(out))
    elif name == "faiss":
        dim = queries.shape[1]
        faiss.pairwise_L2sqr(dim, len(queries), faiss.swig_ptr(queries), len(rows), faiss.swig_ptr(rows),
                             faiss.swig_ptr(out), dim, rows.shape[1], out.shape[1])
    else:
        raise ConfigError(f"unknown GEMM backend {name!r} (choose from {', '.join(BACKENDS)})")
