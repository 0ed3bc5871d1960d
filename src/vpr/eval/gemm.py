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
- ``faiss``: ``faiss.pairwise_L2sqr`` (faiss's BLAS sgemm onto the preloaded norms), reading the plain columns
  of the augmented rows.

A search runs as many threads as the chosen library may use (``threads``: its own setting, as the process
left it), each computing its own products on one thread (``single_threaded``, ``thread_init``): no thread
waits for another between a product and its scan, and no idle BLAS thread spins against the scans.

``backend()`` picks the library: ``$VPR_GEMM`` or the ``gemm`` argument (numpy, torch, faiss; auto or unset:
measure), else the fastest on one thread on a product of a search's size per thread (``_PROBE_QUERIES`` x
``_PROBE_ROWS`` x the search's dimension; CPU time of the thread, so that a busy machine does not sway it),
best of ``_ROUNDS`` after a warm-up call: about 0.1 s, once per process (cached). Every backend computes the same formula in float32; only the
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
_PROBE_QUERIES = (
    256  # the measured product, on one thread: queries x database rows (x the search's dimension)
)
_PROBE_ROWS = 2048  # (smaller ones time every library alike: their kernels differ on big products)
_ROUNDS = 3
_chosen: str | None = None
_numpy_blas_controller = None


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
        raise ConfigError(
            f"{source}={name!r}: unknown GEMM backend; choose {', '.join(BACKENDS)} or auto"
        )
    if _chosen is None:
        _chosen = fastest(dim)
    return _chosen


def fastest(dim: int, candidates: list[str] | None = None) -> str:
    """The backend with the shortest product of the probe's shape on one thread (as each thread of a search
    computes its own): the least CPU time of the calling thread, which other work on the machine does not
    add to, over ``_ROUNDS`` rounds (each backend in turn) after a warm-up call of each."""
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((_PROBE_QUERIES, dim), np.float32)
    rows = augment(rng.standard_normal((_PROBE_ROWS, dim), np.float32))
    aug, out = augment(queries, query=True), np.empty((_PROBE_QUERIES, _PROBE_ROWS), np.float32)
    names = candidates or available()
    best = {name: [] for name in names}
    for _ in range(_ROUNDS + 1):
        for name in names:
            with single_threaded(name):
                start = time.thread_time()
                distances(name, queries, aug, rows, out)
                best[name].append(time.thread_time() - start)
    return min(names, key=lambda name: min(best[name][1:]))


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
    rows: np.ndarray, query: bool = False, out: np.ndarray | None = None, pool=None, step: int = 512
) -> np.ndarray:
    """Float32 rows with two more columns: [−2q, ‖q‖², 1] for queries, [d, 1, ‖d‖²] for database rows (into
    ``out[:len(rows)]`` if given; any float dtype in, converted here), ``step`` rows at a time (the norms
    are taken while the copy is in cache), on ``pool``'s threads if given."""
    n, dim = rows.shape
    out = np.empty((n, dim + 2), np.float32) if out is None else out[:n]
    norm, one = (dim, dim + 1) if query else (dim + 1, dim)

    def part(lo: int) -> None:
        values = out[lo : lo + step, :dim]
        np.copyto(values, rows[lo : lo + step], casting="same_kind")
        np.einsum("ij,ij->i", values, values, out=out[lo : lo + step, norm])
        out[lo : lo + step, one] = 1
        if query:
            values *= np.float32(-2)  # exact: a power of two

    list(pool.map(part, range(0, n, step)) if pool is not None else map(part, range(0, n, step)))
    return out


def distances(
    name: str, queries: np.ndarray, aug: np.ndarray, rows: np.ndarray, out: np.ndarray
) -> None:
    """``out`` (len(queries) x len(rows), C-contiguous float32) = squared L2 distances of the queries (float32,
    C-contiguous; ``aug`` = augment(queries, query=True)) to the augmented database ``rows``, by backend ``name``."""
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
