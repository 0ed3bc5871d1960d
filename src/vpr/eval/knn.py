"""Nearest-neighbour search for evaluation: exact (``flat``, in chunks) or approximate (``ivf``, ``hnsw``).

``eval.index`` in params.yaml picks the method; its settings live in ``eval.<index>`` (e.g. ``eval.ivf``).

Flat search is exact L2 and reads the database a chunk of rows at a time, so a memory-mapped float16 ``.npy``
of any size never has to fit in memory as float32: each block of a chunk is converted once (into float32 rows
with two more columns, its norms: vpr.eval.gemm.augment; faiss reads a float32 block in place), searched, and
the chunk's memory-mapped pages are handed back to the OS, so resident memory stays at about one chunk. Per
block of database rows it is one float32 distance-matrix product (by the fastest GEMM of the process: numpy,
torch or faiss, vpr.eval.gemm) and a scan that keeps, per query, only the distances below its current k-th
best (see ``flat_search``), on as many threads as that library may use; no distance matrix of the whole
database is ever held.

Approximate indexes (faiss IVF or HNSW) are built from the database in chunks too; they keep the vectors
with 8 bits per value by default (``encoding: sq8``, half the bytes of the stored float16; ``fp16`` and
``flat`` = float32 keep more). ``benchmarks/bench_large.py`` reports their recall loss against flat search.
"""

from __future__ import annotations

import math
import mmap
from concurrent.futures import ThreadPoolExecutor
from queue import Queue

import faiss
import numpy as np

from vpr.eval.gemm import augment, database_rows, distances, single_threaded, thread_init
from vpr.eval.gemm import backend as gemm_backend
from vpr.eval.gemm import threads as gemm_threads
from vpr.registry import Registry

INDEXES = Registry("index")

_PRODUCT_ENTRIES = (
    1 << 22
)  # distances per product and thread (16 MiB of float32, one buffer, reused); with
# few queries, blocks of up to _PRODUCT_ENTRIES / 256 rows (a small augmented copy)
_QUERY_ROWS = 4096  # queries per matrix product (more queries: several products per block)
_MASK_BYTES = 1 << 20  # comparison bits per scan step, in cache
_MIN_SCAN = 1 << 20  # distances per thread at least
_FIRST_SLICE = 512  # database rows whose k-th best distance first sets each query's threshold
_EMPTY = np.uint64(np.iinfo(np.uint64).max)  # key of a slot not filled yet
_ROW_BITS = np.uint64(32)


def _release_pages(chunk: np.ndarray) -> None:
    """Give the pages of a chunk of a memory-mapped array back to the OS (they are re-read if touched again):
    resident memory then stays at about one chunk, however large the file."""
    base = chunk
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not chunk.size:
        return
    start = chunk.ctypes.data - np.frombuffer(base, dtype=np.uint8).ctypes.data
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # only pages wholly inside the chunk
    last = (start + chunk.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first and hasattr(base, "madvise"):
        base.madvise(mmap.MADV_DONTNEED, first, last - first)


def iter_chunks(database: np.ndarray, chunk_rows: int):
    """(first row, float32 chunk) over the database. A C-contiguous float32 array is served in place; any other
    is converted into one buffer that serves every chunk (a chunk is valid until the next one is drawn).
    Memory-mapped pages are released once a chunk is done with: memory stays at one chunk."""
    buffer = None
    for start in range(0, len(database), chunk_rows):
        view = database[start : start + chunk_rows]
        if view.dtype == np.float32 and view.flags.c_contiguous:
            yield start, view
            _release_pages(view)
            continue
        if buffer is None:
            buffer = np.empty((min(chunk_rows, len(database)), database.shape[1]), np.float32)
        chunk = buffer[: len(view)]
        np.copyto(chunk, view, casting="same_kind")
        _release_pages(view)
        yield start, chunk


def flat_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    chunk_rows: int = 65536,
    gemm: str | None = None,
) -> np.ndarray:
    """Exact k nearest database rows (L2) of each query, nearest first: (num_queries, min(k, n)) int64.

    Per block of rows: the float32 squared distances ‖q‖² + ‖d‖² − 2 q·d, as faiss IndexFlatL2 computes them,
    in one matrix product by the fastest GEMM of the process (vpr.eval.gemm; ``gemm`` or $VPR_GEMM forces one),
    then a scan (``_scan``) that keeps the few below each query's current k-th best. The blocks are shared out
    among as many threads as the GEMM's library may use, each one computing its blocks' products on one thread
    and keeping its own top-k (``_Worker``; merged at the end): no thread waits for another, and no library's
    idle threads spin against the scans. Equal distances: the lower database row first.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, nq = len(database), len(queries)
    k = min(k, n)
    if k == 0 or nq == 0:
        return np.zeros((nq, k), np.int64)
    if n >= 1 << 32:
        raise ValueError(f"flat search packs database rows in 32 bits: {n} rows are too many")
    q_rows = min(nq, _QUERY_ROWS)
    most = min(
        n, chunk_rows, max(_PRODUCT_ENTRIES // max(q_rows, 256), 2 * k)
    )  # database rows per block
    name = gemm_backend(gemm, queries.shape[1], q_rows, most)
    count = max(1, min(gemm_threads(name), -(-n // most), n * nq // _MIN_SCAN))
    workers = Queue()
    for _ in range(count):
        workers.put(_Worker(nq, k, q_rows, most, queries.shape[1]))
    everyone = list(workers.queue)
    aug = augment(queries, query=True)

    def search(first_row: int, block: np.ndarray) -> None:
        worker = workers.get()  # a worker per thread at a time: its buffers are its own
        try:
            worker.search(name, queries, aug, block, first_row)
        finally:
            workers.put(worker)

    with (
        single_threaded(name),
        ThreadPoolExecutor(count, initializer=thread_init, initargs=(name,)) as pool,
    ):
        for start in range(0, n, chunk_rows):
            chunk = database[start : start + chunk_rows]
            blocks = _blocks(len(chunk), most, count)
            list(pool.map(search, [start + b.start for b in blocks], [chunk[b] for b in blocks]))
            _release_pages(chunk)
    top = np.concatenate([worker.top for worker in everyone], axis=1)
    top = np.partition(top, k - 1, axis=1)[:, :k] if count > 1 else top
    top.sort(axis=1)  # keys order by distance (nearest first), then by row
    return np.where(top == _EMPTY, -1, (top & np.uint64(0xFFFFFFFF)).astype(np.int64))


class _Worker:
    """One thread's share of a search: its buffers (a block of augmented database rows, their products with a
    block of queries, the comparison bits of the scan) and the k best (distance, row) keys so far, unsorted,
    of every query over the blocks it has searched."""

    def __init__(self, nq: int, k: int, q_rows: int, block_rows: int, dim: int):
        self.top = np.full((nq, k), _EMPTY)
        self.rows = np.empty((block_rows, dim + 2), np.float32)
        self.dist = np.empty(
            q_rows * block_rows, np.float32
        )  # only the part a product writes is ever touched
        self.mask = np.zeros(_MASK_BYTES + 8, bool)  # + 8: read 8 at a time (_nonzero)
        self.q_rows, self.merged = q_rows, 0

    def search(
        self, name: str, queries: np.ndarray, aug: np.ndarray, block: np.ndarray, first_row: int
    ) -> None:
        block = database_rows(name, block, self.rows)
        for q0 in range(0, len(queries), self.q_rows):
            q = queries[q0 : q0 + self.q_rows]
            product = self.dist[: len(q) * len(block)].reshape(len(q), len(block))
            distances(name, q, aug[q0 : q0 + len(q)], block, product)
            _scan(product, self.top[q0 : q0 + len(q)], first_row, self.mask, self.merged)
        self.merged += len(block)


def _blocks(rows: int, most: int, workers: int) -> list[slice]:
    """``rows`` split in equal blocks of at most ``most`` rows, as many as a multiple of ``workers`` (when there
    are rows enough): the threads finish together."""
    count = -(-rows // most)
    count = min(rows, -(-count // workers) * workers)
    bounds = np.linspace(0, rows, count + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _scan(dist: np.ndarray, top: np.ndarray, first_row: int, mask: np.ndarray, merged: int) -> None:
    """Merge a block's distances (database rows from ``first_row``) into ``top``, which holds ``merged`` rows
    already, in column slices as wide as the rows merged so far (the first ``_FIRST_SLICE``): each slice is
    compared with the thresholds the previous ones left, so a query meets about k candidates per slice, in
    log2(n / _FIRST_SLICE) slices."""
    k, lo = top.shape[1], 0
    while lo < dist.shape[1]:
        hi = min(dist.shape[1], lo + max(_FIRST_SLICE, 2 * k, merged + lo))
        rows, cols, values = _candidates(dist[:, lo:hi], _thresholds(top), k, mask)
        _merge(top, rows, _keys(values, cols + first_row + lo))
        lo = hi


def _candidates(dist, thr, k, mask):
    """(query, column, distance) of the slice's entries below ``thr`` (query order). Queries without k results
    yet, or with too many candidates (database rows in decreasing order of distance), first lower their
    threshold to just above the k-th smallest distance of this slice."""
    if dist.shape[1] > k:
        fresh = np.isposinf(thr)
        if fresh.all():
            thr[:] = _above_kth(dist, k)
        elif fresh.any():
            thr[fresh] = _above_kth(dist[fresh], k)
    rows, cols, values = _below(dist, thr, mask)
    heavy = np.flatnonzero(np.bincount(rows, minlength=len(thr)) > 16 * k + 64)
    if heavy.size:
        thr[heavy] = np.minimum(thr[heavy], _above_kth(dist[heavy], k))
        rows, cols, values = _below(dist, thr, mask)
    return rows, cols, values


def _above_kth(dist: np.ndarray, k: int) -> np.ndarray:
    """Per row, the float32 just above the k-th smallest value: ``< result`` keeps the k best and their ties."""
    return np.nextafter(np.partition(dist, k - 1, axis=1)[:, k - 1], np.float32(np.inf))


def _below(dist, thr, mask):
    """(query, column, distance) of the entries < thr, a group of query rows at a time (the comparison bits fit
    ``mask``, in cache)."""
    nq, width = dist.shape
    group, found = max(1, (len(mask) - 8) // width), []
    for r0 in range(0, nq, group):
        part = dist[r0 : r0 + group]
        np.less(part, thr[r0 : r0 + group, None], out=mask[: part.size].reshape(part.shape))
        rows, cols = np.divmod(_nonzero(mask, part.size), width)
        found.append((rows + r0, cols, part[rows, cols]))  # while the part is in cache
    return tuple(np.concatenate(x) for x in zip(*found))


def _nonzero(mask: np.ndarray, size: int) -> np.ndarray:
    """np.flatnonzero(mask[:size]) for a sparse mask, 8 bytes at a time (``mask`` has 8 spare entries)."""
    words = -(-size // 8)
    mask[size : words * 8] = False
    packed = mask[: words * 8].view(np.uint64)
    hit = np.flatnonzero(packed != 0)
    bits = np.flatnonzero(packed[hit].view(np.bool_))
    return hit[bits >> 3] * 8 + (bits & 7)


def _keys(dist: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(distance, database row) packed in a uint64 that orders by distance, then row."""
    bits = (dist + np.float32(0)).view(np.int32)  # + 0: -0.0 becomes 0.0
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # int32 order = float order
    return (
        (ordered.view(np.uint32) ^ np.uint32(1 << 31)).astype(np.uint64) << _ROW_BITS
    ) | rows.astype(np.uint64)


def _thresholds(top: np.ndarray) -> np.ndarray:
    """Per query, the distance of its k-th best key (inf while it has fewer than k): what a new row must beat."""
    worst = top.max(axis=1)
    ordered = ((worst >> _ROW_BITS).astype(np.uint32) ^ np.uint32(1 << 31)).view(np.int32)
    dist = (ordered ^ ((ordered >> 31) & 0x7FFFFFFF)).view(np.float32)
    return np.where(worst == _EMPTY, np.float32(np.inf), dist)


def _merge(top: np.ndarray, rows: np.ndarray, keys: np.ndarray) -> None:
    """Put each query's new keys (``rows`` ascending) with its current k and keep the k smallest."""
    if not rows.size:
        return
    k, counts = top.shape[1], np.bincount(rows, minlength=len(top))
    touched = np.flatnonzero(counts)
    n = counts[touched]
    padded = np.full((len(touched), k + int(n.max())), _EMPTY)
    padded[:, :k] = top[touched]
    local = rows if len(touched) == len(top) else np.repeat(np.arange(len(touched)), n)
    padded[local, np.arange(len(rows)) - np.repeat(np.cumsum(n) - n - k, n)] = keys
    top[touched] = np.partition(padded, k - 1, axis=1)[:, :k]


def _train_sample(database: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    rows = np.sort(
        np.random.default_rng(seed).choice(len(database), min(count, len(database)), replace=False)
    )
    return np.ascontiguousarray(database[rows], dtype=np.float32)


_ENCODINGS = {"flat": None, "fp16": "QT_fp16", "sq8": "QT_8bit"}


@INDEXES.register()
def flat(*, chunk_rows: int):
    return lambda database, queries, k: flat_search(database, queries, k, chunk_rows)


@INDEXES.register()
def ivf(*, lists: int | None, probe: int, encoding: str, chunk_rows: int):
    def search(database, queries, k):
        n, dim = database.shape
        cells = max(1, min(lists or int(round(math.sqrt(n))), n))
        quantizer = faiss.IndexFlatL2(dim)
        if _ENCODINGS[encoding] is None:
            index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_L2)
        else:
            qtype = getattr(faiss.ScalarQuantizer, _ENCODINGS[encoding])
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, cells, qtype, faiss.METRIC_L2)
        index.cp.min_points_per_centroid = 1  # small databases: no warning, fewer points per cell
        index.train(_train_sample(database, 50 * cells))  # faiss wants >= 39 points per cell
        for _, chunk in iter_chunks(database, chunk_rows):
            index.add(chunk)
        index.nprobe = min(probe, cells)
        return _search_index(index, database, queries, k)

    return search


@INDEXES.register()
def hnsw(*, m: int, ef_construction: int, ef_search: int, encoding: str, chunk_rows: int):
    def search(database, queries, k):
        dim = database.shape[1]
        if _ENCODINGS[encoding] is None:
            index = faiss.IndexHNSWFlat(dim, m)
        else:
            index = faiss.IndexHNSWSQ(dim, getattr(faiss.ScalarQuantizer, _ENCODINGS[encoding]), m)
            index.train(_train_sample(database, 65536))
        index.hnsw.efConstruction = ef_construction
        for _, chunk in iter_chunks(database, chunk_rows):
            index.add(chunk)
        index.hnsw.efSearch = max(ef_search, k)
        return _search_index(index, database, queries, k)

    return search


def _search_index(index, database, queries, k) -> np.ndarray:
    k = min(k, len(database))
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return found.astype(np.int64)


def knn(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    index: str = "flat",
    settings: dict | None = None,
) -> np.ndarray:
    """Top-k database indices per query (nearest first) with the ``index`` method of ``eval.index``."""
    return INDEXES.build(index, settings=settings, key=f"eval.{index}")(database, queries, k)
