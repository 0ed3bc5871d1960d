"""Nearest-neighbour search for evaluation: exact (``flat``, in chunks) or approximate (``ivf``, ``hnsw``).

``eval.index`` in params.yaml picks the method; its settings live in ``eval.<index>`` (e.g. ``eval.ivf``).

Flat search is exact (faiss IndexFlatL2, the reference protocol's ranking) and reads the database a
chunk of rows at a time, so a memory-mapped float16 ``.npy`` of any size never has to fit in memory as
float32: each chunk is converted, searched, merged into a running top-k (faiss ResultHeap), and its
memory-mapped pages are handed back to the OS, so resident memory stays at about one chunk.

Approximate indexes (faiss IVF or HNSW) are built from the database in chunks too; they keep the vectors
with 8 bits per value by default (``encoding: sq8``, half the bytes of the stored float16; ``fp16`` and
``flat`` = float32 keep more). ``benchmarks/bench_large.py`` reports their recall loss against flat search.
"""
from __future__ import annotations

import math
import mmap

import faiss
import numpy as np

from vpr.registry import Registry

INDEXES = Registry("index")


def _release_pages(chunk: np.ndarray) -> None:
    """Give the pages of a chunk of a memory-mapped array back to the OS (they are re-read if touched again):
    resident memory then stays at about one chunk, however large the file."""
    base = chunk
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not chunk.size:
        return
    start = chunk.ctypes.data - np.frombuffer(base, dtype=np.uint8).ctypes.data
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE           # only pages wholly inside the chunk
    last = (start + chunk.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first and hasattr(base, "madvise"):
        base.madvise(mmap.MADV_DONTNEED, first, last - first)


def iter_chunks(database: np.ndarray, chunk_rows: int):
    """(first row, float32 chunk) over the database. One buffer serves every chunk (a chunk is valid until the
    next one is drawn) and memory-mapped pages are released once copied: memory stays at one chunk."""
    buffer = np.empty((min(chunk_rows, len(database)), database.shape[1]), np.float32)
    for start in range(0, len(database), chunk_rows):
        view = database[start:start + chunk_rows]
        chunk = buffer[:len(view)]
        np.copyto(chunk, view, casting="same_kind")
        _release_pages(view)
        yield start, chunk


def flat_search(database: np.ndarray, queries: np.ndarray, k: int, chunk_rows: int = 65536) -> np.ndarray:
    """Exact k nearest database rows (L2) of each query, nearest first: (num_queries, min(k, n)) int64.
    faiss flat L2 search (as IndexFlatL2) of one chunk of rows at a time, merged in a faiss ResultHeap."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(database))
    if k == 0 or len(queries) == 0:
        return np.zeros((len(queries), k), np.int64)
    if len(database) <= chunk_rows:       # one chunk: no merging
        (_, chunk), = iter_chunks(database, chunk_rows)
        return faiss.knn(queries, chunk, k, faiss.METRIC_L2)[1].astype(np.int64)
    heap = faiss.ResultHeap(len(queries), k, keep_max=False)
    for start, chunk in iter_chunks(database, chunk_rows):
        # faiss.knn = IndexFlatL2's search without copying the chunk into an index
        dist, idx = faiss.knn(queries, chunk, k, faiss.METRIC_L2)   # -1 / inf beyond a short chunk's size
        heap.add_result(dist, np.where(idx >= 0, idx + start, -1))
    heap.finalize()
    return heap.I.astype(np.int64)


def _train_sample(database: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    rows = np.sort(np.random.default_rng(seed).choice(len(database), min(count, len(database)), replace=False))
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
        index.cp.min_points_per_centroid = 1          # small databases: no warning, fewer points per cell
        index.train(_train_sample(database, 50 * cells))   # faiss wants >= 39 points per cell
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


def knn(database: np.ndarray, queries: np.ndarray, k: int, index: str = "flat", settings: dict | None = None
        ) -> np.ndarray:
    """Top-k database indices per query (nearest first) with the ``index`` method of ``eval.index``."""
    return INDEXES.build(index, settings=settings, key=f"eval.{index}")(database, queries, k)
