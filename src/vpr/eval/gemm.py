"""The float32 distance product of exact search (vpr.eval.knn.flat_search), by the fastest GEMM in the process.

Squared L2 distances ‖q‖² + ‖d‖² − 2 q·d of a block of queries to a block of database rows are one matrix
product of augmented rows, [−2q, ‖q‖², 1] · [d, 1, ‖d‖²] (``augment``: two more columns), written straight into
the caller's preallocated float32 array: no pass over the distances after the product. Three libraries can
compute it, and which is fastest depends on the CPU and on how each was built (e.g. on AMD Zen 4 numpy's
OpenBLAS runs AVX-512 kernels, torch's MKL and faiss's older OpenBLAS AVX2 ones):

- ``numpy``: ``np.matmul(..., out=)`` (numpy's BLAS);
- ``torch``: ``torch.mm(..., out=)`` on the same memory (torch's BLAS); a candidate only once the process has
  imported torch (importing it for this would cost more than it saves, and the light pipeline stages run
  without torch);
- ``faiss``: ``faiss.pairwise_L2sqr`` (faiss's BLAS sgemm onto the norms it preloads), reading a float32
  database in place (no augmented copy), else the plain columns of the augmented rows.

A search runs as many threads as the chosen library may use (``threads``: its own setting, as the process
left it), each computing its own products on one thread (``single_threaded``, ``thread_init``): no thread
waits for another between a product and its scan, and no idle BLAS thread spins against the scans.

``backend()`` picks the library: ``$VPR_GEMM`` or the ``gemm`` argument (numpy, torch, faiss; auto or unset:
measure), else the fastest on one thread on a product of the first search's shape per thread (CPU time of
the thread, so that a busy machine does not sway it; ``fastest``): about 0.2 s for 1000 x 512-D queries (less
for fewer), once per process (cached). Every backend computes the same formula in float32; only the
rounding order of the sums differs, so the top-k agree up to ties (exact ties, e.g. small integer vectors,
stay exact).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import faiss
import numpy as np

from vpr.errors import ConfigError

BACKENDS = ("numpy", "torch", "faiss")
ENV = "VPR_GEMM"
_ROUNDS = 1  # timed products per backend (after a warm-up on 16 rows)
_NUMPY_EDGE = (
    1.15  # another library must beat numpy by more than this on the probe (see ``fastest``)
)
_chosen: str | None = None
_numpy_blas_controller = None


def available() -> list[str]:
    """The backends this process can use without importing anything more (torch only once imported)."""
    return [name for name in BACKENDS if name != "torch" or "torch" in sys.modules]


def backend(name: str | None = None, dim: int = 512, queries: int = 1000, rows: int = 4096) -> str:
    """The GEMM to use: ``name`` if given, else ``$VPR_GEMM``, else the fastest measured (once per process, on a
    product of ``queries`` x ``rows`` x ``dim``: the first search's per thread)."""
    global _chosen
    source = "gemm" if name else ENV
    name = (name or os.environ.get(ENV, "")).strip().lower() or "auto"
    if name in BACKENDS:
        return name
    if name != "auto":
        raise ConfigError(
            f"{source}={name!r}: unknown GEMM backend; choose {', '.join(BACKENDS)} or auto"
        )
    if _chosen is None:
        _chosen = fastest(dim, queries, rows)
    return _chosen


def fastest(
    dim: int, queries: int = 1000, rows: int = 4096, candidates: list[str] | None = None
) -> str:
    """The backend with the shortest product of a search's shape per thread (``queries`` x ``rows`` x ``dim``),
    on one thread as each thread of a search computes its own, its database rows' preparation included: the
    CPU time of the calling thread, which other work on the machine does not add to, of ``_ROUNDS`` products
    after a warm-up on 16 rows, each backend in turn. The real shape, not a smaller one: what each library
    does once per product (numpy's copies the database rows once per block, faiss's adds passes over the
    distances, every one packs the queries) weighs more on smaller products and would sway the choice (on a
    2-core Zen 4, 1000 queries: faiss 20 % faster than numpy at 1024 rows, 10 % slower at 4194). numpy wins
    unless another library is faster by ``_NUMPY_EDGE`` (its search does the least besides the product)."""
    rng = np.random.default_rng(0)
    q = rng.random((queries, dim), np.float32)
    block = rng.random((rows, dim), np.float32)
    buffer, aug = np.empty((rows, dim + 2), np.float32), augment(q, query=True)
    names = candidates or available()
    best = {name: [] for name in names}
    for size in (min(16, rows),) + (rows,) * _ROUNDS:
        out = np.zeros((queries, size), np.float32)  # its pages touched before any timing
        for name in names:
            with single_threaded(name):
                start = time.thread_time()
                distances(name, q, aug, database_rows(name, block[:size], buffer), out)
                best[name].append(time.thread_time() - start)
    return min(
        names, key=lambda name: min(best[name][1:]) * (1 if name == "numpy" else _NUMPY_EDGE)
    )


def threads(name: str) -> int:
    """How many threads backend ``name``'s library may use in this process (its own setting, as the user left
    it): the search runs as many, each with one-thread products."""
    if name == "torch":
        import torch

        return torch.get_num_threads()
    if name == "faiss":
        return faiss.omp_get_max_threads()
    return max([lib["num_threads"] for lib in _numpy_blas().info()] or [1])


@contextlib.contextmanager
def single_threaded(name: str):
    """Backend ``name``'s products on one thread inside (the library's setting restored after): numpy's BLAS
    and torch have one setting for the whole process; OpenMP (faiss) one per thread, hence ``thread_init``."""
    if name == "numpy":
        with _numpy_blas().limit(limits=1):
            yield
        return
    if name == "torch":
        import torch

        get, set_ = torch.get_num_threads, torch.set_num_threads
    else:
        get, set_ = faiss.omp_get_max_threads, faiss.omp_set_num_threads
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


def thread_init(name: str) -> None:
    """Run by each search thread first: faiss's products on this thread only (OpenMP's count is per thread)."""
    if name == "faiss":
        faiss.omp_set_num_threads(1)


def _numpy_blas():
    """threadpoolctl's handle on numpy's own BLAS (not another library's), found once per process."""
    global _numpy_blas_controller
    if _numpy_blas_controller is None:
        from threadpoolctl import ThreadpoolController

        home = os.path.dirname(os.path.dirname(np.__file__))
        blas = ThreadpoolController().select(user_api="blas")
        mine = [
            lib["filepath"]
            for lib in blas.info()
            if lib["filepath"].startswith(home + os.sep + "numpy")
        ]
        _numpy_blas_controller = blas.select(filepath=mine) if mine else blas
    return _numpy_blas_controller


def augment(
    rows: np.ndarray, query: bool = False, out: np.ndarray | None = None, step: int = 512
) -> np.ndarray:
    """Float32 rows with two more columns: [−2q, ‖q‖², 1] for queries, [d, 1, ‖d‖²] for database rows (into
    ``out[:len(rows)]`` if given; any float dtype in, converted here), ``step`` rows at a time (the norms
    are taken while the copy is in cache)."""
    n, dim = rows.shape
    out = np.empty((n, dim + 2), np.float32) if out is None else out[:n]
    norm, one = (dim, dim + 1) if query else (dim + 1, dim)
    for lo in range(0, n, step):
        values = out[lo : lo + step, :dim]
        np.copyto(values, rows[lo : lo + step], casting="same_kind")
        np.einsum("ij,ij->i", values, values, out=out[lo : lo + step, norm])
        out[lo : lo + step, one] = 1
        if query:
            values *= np.float32(-2)  # exact: a power of two
    return out


def database_rows(name: str, block: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The rows ``distances`` takes for a block of database rows: faiss reads a float32 C-contiguous block in
    place (it adds the norms itself), the others the block's augmented copy (into ``out``)."""
    if name == "faiss" and block.dtype == np.float32 and block.flags.c_contiguous:
        return block
    return augment(block, out=out)


def distances(
    name: str, queries: np.ndarray, aug: np.ndarray, rows: np.ndarray, out: np.ndarray
) -> None:
    """``out`` (len(queries) x len(rows), C-contiguous float32) = squared L2 distances of the queries (float32,
    C-contiguous; ``aug`` = augment(queries, query=True)) to the database ``rows`` (``database_rows``), by backend
    ``name``."""
    if name == "numpy":
        np.matmul(aug, rows.T, out=out)
    elif name == "torch":
        import torch

        torch.mm(torch.from_numpy(aug), torch.from_numpy(rows).T, out=torch.from_numpy(out))
    elif name == "faiss":
        dim = queries.shape[1]
        faiss.pairwise_L2sqr(
            dim,
            len(queries),
            faiss.swig_ptr(queries),
            len(rows),
            faiss.swig_ptr(rows),
            faiss.swig_ptr(out),
            dim,
            rows.shape[1],
            out.shape[1],
        )
    else:
        raise ConfigError(f"unknown GEMM backend {name!r} (choose from {', '.join(BACKENDS)})")
