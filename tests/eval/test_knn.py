"""Large-database evaluation: exact search in chunks over memory-mapped float16 descriptors, approximate
indexes by name, and the params that choose them."""

import os

import faiss
import numpy as np
import pytest

from tests.helpers import with_change
from vpr.config import validate
from vpr.data.groundtruth import EvalSet, Positives, save_eval_set
from vpr.errors import ConfigError
from vpr.eval import gemm
from vpr.eval.evaluate import evaluate_features
from vpr.eval.knn import flat_search, iter_chunks, knn
from vpr.eval.retrieval import recall_at


def _clustered(seed, nb=3000, nq=200, dim=64, centres=150):
    """Database vectors around a few centres, queries near database vectors: nearest neighbours are clear."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dim))
    db = centre[rng.integers(0, centres, nb)] + 0.3 * rng.normal(size=(nb, dim))
    q = db[rng.choice(nb, nq, replace=False)] + 0.1 * rng.normal(size=(nq, dim))
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return db.astype(np.float32), q.astype(np.float32)


def _faiss_flat(db, q, k):
    index = faiss.IndexFlatL2(db.shape[1])
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    return index.search(q, k)[1]


def _distances64(db, q):
    """Squared L2 distances in float64, from the same (float16 or float32) values."""
    db, q = np.asarray(db, np.float64), np.asarray(q, np.float64)
    return (q**2).sum(1)[:, None] - 2 * q @ db.T + (db**2).sum(1)[None]


def _assert_nearest(db, q, found, k, rtol=1e-5):
    """``found`` holds, per query and nearest first, k distinct rows whose float64 distances are the k smallest
    ones rank by rank (up to float32 rounding): the brute-force top-k, up to ties."""
    d = _distances64(db, q)
    k = min(k, len(db))
    assert found.shape == (len(q), k) and found.dtype == np.int64
    assert ((found >= 0) & (found < len(db))).all() and all(
        len(set(row)) == k for row in found.tolist()
    )
    expect = np.sort(d, axis=1)[:, :k]
    assert np.allclose(
        np.take_along_axis(d, found, 1), expect, rtol=0, atol=rtol * max(1.0, np.abs(d).max())
    )


@pytest.fixture
def small_blocks(monkeypatch):
    """Products of a few hundred database rows and 64 queries: many blocks, slices and query blocks."""
    import vpr.eval.knn as knn_module

    monkeypatch.setattr(knn_module, "_PRODUCT_ENTRIES", 64 * 300)
    monkeypatch.setattr(knn_module, "_QUERY_ROWS", 64)
    monkeypatch.setattr(knn_module, "_FIRST_SLICE", 40)
    monkeypatch.setattr(knn_module, "_MIN_SCAN", 1000)  # several threads even on small problems
    monkeypatch.setattr(knn_module, "gemm_threads", lambda name: 3)  # three, whatever the machine


@pytest.mark.parametrize("chunk_rows", [100_000, 1000, 777])
@pytest.mark.parametrize("blocks", ["default", "small"])
def test_flat_search_in_chunks_returns_the_brute_force_neighbours(
    tmp_path, request, chunk_rows, blocks
):
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    db, q = _clustered(0)
    np.save(tmp_path / "db.npy", db.astype(np.float16))
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")  # float16, memory-mapped
    _assert_nearest(mapped, q, flat_search(mapped, q, 20, chunk_rows=chunk_rows), 20)
    _assert_nearest(db, q, flat_search(db, q, 20, chunk_rows=chunk_rows), 20)
    np.save(tmp_path / "db32.npy", db)  # float32, memory-mapped read-only: in place
    mapped32 = np.load(tmp_path / "db32.npy", mmap_mode="r")
    assert (
        flat_search(mapped32, q, 20, chunk_rows=chunk_rows) == flat_search(db, q, 20, chunk_rows)
    ).all()
    _assert_nearest(
        db, q, flat_search(np.asfortranarray(db.astype(np.float64)), q, 20, chunk_rows), 20
    )


def test_flat_search_agrees_with_faiss_flat_l2_on_clear_neighbours():
    db, q = _clustered(4)
    assert (flat_search(db, q, 5) == _faiss_flat(db, q, 5)).mean() > 0.999


@pytest.mark.parametrize("blocks", ["default", "small"])
def test_vectors_need_not_be_unit_norm(request, blocks):
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    rng = np.random.default_rng(5)
    db = (rng.normal(size=(2000, 32)) * rng.uniform(0.05, 20, (2000, 1))).astype(
        np.float32
    )  # e.g. PCA, no renorm
    q = (rng.normal(size=(150, 32)) * rng.uniform(0.05, 20, (150, 1))).astype(np.float32)
    _assert_nearest(db, q, flat_search(db, q, 25, chunk_rows=700), 25)


@pytest.mark.parametrize("blocks", ["default", "small"])
def test_equal_distances_come_lower_row_first(request, blocks):
    """Exact ties (integer vectors: float32 distances are exact) across slices, blocks and chunks."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    rng = np.random.default_rng(6)
    base = rng.integers(-3, 4, size=(60, 8)).astype(np.float32)
    db = base[rng.integers(0, len(base), 3000)]  # every vector many times over
    q = base[rng.integers(0, len(base), 70)] + rng.integers(-1, 2, size=(70, 8)).astype(np.float32)
    d = _distances64(db, q)
    expect = np.lexsort((np.broadcast_to(np.arange(len(db)), d.shape), d), axis=1)[:, :30]
    for chunk_rows in (100_000, 450):
        assert (flat_search(db, q, 30, chunk_rows=chunk_rows) == expect).all()


@pytest.mark.parametrize("blocks", ["default", "small"])
def test_rows_in_decreasing_order_of_distance(request, blocks):
    """Each new slice beats every threshold: the queries' thresholds are lowered from the slice itself."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    rng = np.random.default_rng(7)
    q = rng.normal(size=(40, 16)).astype(np.float32)
    db = rng.normal(size=(2500, 16)).astype(np.float32)
    db = db[np.argsort(-_distances64(db, q[:1])[0], kind="stable")]  # farthest from query 0 first
    _assert_nearest(db, q, flat_search(db, q, 10, chunk_rows=1000), 10)


@pytest.mark.parametrize(
    "n,k", [(1, 1), (1, 5), (2, 1), (2, 2), (3, 20), (7, 20), (40, 40), (41, 40)]
)
def test_tiny_databases_and_k_up_to_larger_than_the_database(tmp_path, n, k):
    rng = np.random.default_rng(n * 100 + k)
    db, q = rng.normal(size=(n, 16)).astype(np.float32), rng.normal(size=(9, 16)).astype(np.float32)
    np.save(tmp_path / "db.npy", db.astype(np.float16))
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    for database in (db, mapped):
        for chunk_rows in (65536, 3):
            out = flat_search(database, q, k, chunk_rows=chunk_rows)
            _assert_nearest(database, q, out, k)
            if k >= n:
                assert all(sorted(row) == list(range(n)) for row in out.tolist())


def test_no_queries_or_k_zero_give_empty_results():
    db, q = _clustered(1, nb=10, nq=3)
    assert flat_search(db, q[:0], 5).shape == (0, 5)
    assert flat_search(db, q, 0).shape == (3, 0)


def test_k_larger_than_the_database_returns_every_row():
    db, q = _clustered(1, nb=7, nq=3)
    out = flat_search(db, q, 20, chunk_rows=3)
    assert out.shape == (3, 7) and all(sorted(row) == list(range(7)) for row in out)


@pytest.mark.parametrize("backend", gemm.BACKENDS)
@pytest.mark.parametrize("blocks", ["default", "small"])
def test_every_gemm_backend_finds_the_faiss_flat_l2_neighbours(request, backend, blocks):
    """Random vectors (no clear neighbours, not unit norm): each backend's top-k has the distances of faiss
    IndexFlatL2's, rank by rank (the same top-k up to ties), over several chunks, blocks and query blocks."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    rng = np.random.default_rng(9)
    db = (rng.normal(size=(2500, 48)) * rng.uniform(0.5, 2, (2500, 1))).astype(np.float32)
    q = rng.normal(size=(130, 48)).astype(np.float32)
    found = flat_search(db.astype(np.float16), q, 15, chunk_rows=900, gemm=backend)
    db16 = db.astype(np.float16).astype(np.float32)
    d, expect = _distances64(db16, q), _faiss_flat(db16, q, 15)
    _assert_nearest(db16, q, found, 15)
    assert np.allclose(
        np.take_along_axis(d, found, 1), np.take_along_axis(d, expect, 1), rtol=0, atol=1e-4
    )
    assert (found == expect).mean() > 0.99


@pytest.mark.parametrize("blocks", ["default", "small"])
def test_every_gemm_backend_orders_exact_ties_the_same(request, blocks):
    """Small integer vectors: float32 distances are exact whatever the order of the sums, so every backend
    returns the very same rows (equal distances: the lower row first), and faiss the same distances."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    rng = np.random.default_rng(10)
    base = rng.integers(-3, 4, size=(40, 12)).astype(np.float32)
    db = base[rng.integers(0, len(base), 2000)]
    q = base[rng.integers(0, len(base), 90)] + rng.integers(-1, 2, size=(90, 12)).astype(np.float32)
    d = _distances64(db, q)
    expect = np.lexsort((np.broadcast_to(np.arange(len(db)), d.shape), d), axis=1)[:, :25]
    for backend in gemm.BACKENDS:
        assert (flat_search(db, q, 25, chunk_rows=700, gemm=backend) == expect).all(), backend
    assert (
        np.take_along_axis(d, _faiss_flat(db, q, 25), 1) == np.take_along_axis(d, expect, 1)
    ).all()


def test_the_gemm_chooser_measures_once_and_keeps_an_available_backend(monkeypatch):
    monkeypatch.delenv(gemm.ENV, raising=False)
    monkeypatch.setattr(gemm, "_chosen", None)
    calls = []
    measure = gemm.fastest
    monkeypatch.setattr(gemm, "fastest", lambda *shape: calls.append(shape) or measure(*shape))
    db, q = _clustered(11, nb=500, nq=20, dim=24)
    first = flat_search(db, q, 3)
    chosen = gemm.backend()
    assert calls == [(24, 20, 500)] and chosen in gemm.available() and gemm._chosen == chosen
    assert (flat_search(db, q, 3) == first).all() and calls == [
        (24, 20, 500)
    ]  # cached: no second measurement
    assert measure(16, 8, 64, ["faiss"]) == "faiss" and measure(16, 8, 64, ["numpy", "faiss"]) in (
        "numpy",
        "faiss",
    )
    monkeypatch.setenv(gemm.ENV, "faiss")
    assert (
        gemm.backend() == "faiss" and gemm.backend("numpy") == "numpy" and calls == [(24, 20, 500)]
    )


def test_torch_is_a_gemm_candidate_only_once_imported(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert gemm.available() == ["numpy", "faiss"]
    monkeypatch.setitem(sys.modules, "torch", object())
    assert gemm.available() == ["numpy", "torch", "faiss"]


@pytest.mark.parametrize("backend", gemm.BACKENDS)
def test_a_search_leaves_each_library_s_thread_count_as_it_was(backend):
    import torch

    before = gemm.threads("numpy"), torch.get_num_threads(), faiss.omp_get_max_threads()
    db, q = _clustered(13, nb=3000, nq=400, dim=32)
    flat_search(db, q, 5, gemm=backend)
    with gemm.single_threaded(backend):
        assert gemm.threads(backend) == 1
    assert (gemm.threads("numpy"), torch.get_num_threads(), faiss.omp_get_max_threads()) == before


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_an_unknown_gemm_backend_is_one_clear_line(monkeypatch, how):
    db, q = _clustered(12, nb=50, nq=5, dim=8)
    if how == "environment":
        monkeypatch.setenv(gemm.ENV, "openblas")
    with pytest.raises(ConfigError) as err:
        flat_search(db, q, 3, gemm="openblas" if how == "argument" else None)
    source = "gemm" if how == "argument" else "VPR_GEMM"
    assert (
        str(err.value)
        == f"{source}='openblas': unknown GEMM backend; choose numpy, torch, faiss or auto"
    )


def test_keys_order_by_distance_then_row_and_give_back_the_distance():
    from vpr.eval.knn import _keys, _thresholds

    dist = np.array([-1.5, -0.0, 0.0, 1e-30, 2.5, 2.5, np.inf, -np.inf, 7.0], np.float32)
    rows = np.array([3, 9, 2, 5, 8, 1, 0, 4, 6])
    keys = _keys(dist, rows)
    order = np.argsort(keys)
    assert [(float(dist[i]) + 0.0, int(rows[i])) for i in order] == sorted(
        zip((dist + 0).tolist(), rows.tolist())
    )
    for i in range(len(dist)):
        assert _thresholds(keys[None, i : i + 1])[0] == dist[i]


@pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads resident memory from /proc"
)
def test_chunks_of_a_memory_mapped_file_do_not_stay_resident(tmp_path):
    rows, dim = 65536, 256  # 32 MiB of float16
    np.save(tmp_path / "big.npy", np.ones((rows, dim), np.float16))

    def file_pages_mib():
        for line in open("/proc/self/status"):
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024

    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    before, peak = file_pages_mib(), 0.0
    for _, chunk in iter_chunks(mapped, 4096):  # 2 MiB per chunk
        assert chunk.dtype == np.float32 and chunk.sum() == chunk.size
        peak = max(peak, file_pages_mib() - before)
    assert peak < 8, f"{peak:.1f} MiB of the file stayed resident"
    np.asarray(mapped, dtype=np.float32).sum()  # the naive way keeps all 32 MiB resident
    assert file_pages_mib() - before > 24


@pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads resident memory from /proc"
)
def test_a_float32_memory_mapped_database_is_searched_in_chunks_and_released(tmp_path):
    rows, dim = 32768, 256  # 32 MiB of float32: searched chunk by chunk
    np.save(
        tmp_path / "big.npy", np.random.default_rng(8).normal(size=(rows, dim)).astype(np.float32)
    )

    def file_pages_mib():
        for line in open("/proc/self/status"):
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024

    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = file_pages_mib()
    found = flat_search(mapped, np.asarray(mapped[:5]), 3, chunk_rows=4096)
    assert (found[:, 0] == np.arange(5)).all()
    assert file_pages_mib() - before < 8, "the chunks' pages stayed resident"


@pytest.mark.parametrize(
    "index,settings",
    [
        ("ivf", {"probe": 8}),
        ("ivf", {"encoding": "sq8", "lists": 20}),
        ("hnsw", {}),
        ("hnsw", {"encoding": "flat", "m": 8}),
    ],
)
def test_approximate_indexes_find_most_nearest_neighbours(index, settings):
    db, q = _clustered(2)
    exact = _faiss_flat(db, q, 1)[:, 0]
    found = knn(db.astype(np.float16), q, 10, index, settings)
    assert found.shape == (len(q), 10)
    assert (found[:, 0] == exact).mean() > 0.8


def test_missing_results_of_an_approximate_index_never_count_as_hits():
    positives = Positives.from_lists([[4], [0]])
    predictions = np.array(
        [[-1, -1], [3, -1]]
    )  # -1 = nothing found; q=1's key -1 + 1*5 = 4 must not match q=0
    assert recall_at(predictions, positives, 5, [1, 2]) == {1: 0.0, 2: 0.0}


def test_evaluate_with_an_approximate_index(tmp_path):
    db, q = _clustered(3, nb=2000, nq=100)
    rng = np.random.default_rng(0)
    db_utm = rng.uniform(0, 500, (len(db), 2))
    near = _faiss_flat(db, q, 1)[:, 0]
    q_utm = db_utm[near] + 1.0  # the nearest descriptor is a positive
    gt = EvalSet(
        np.array([f"db/{i}.jpg" for i in range(len(db))]),
        np.array([f"q/{i}.jpg" for i in range(len(q))]),
        db_utm,
        q_utm,
        Positives.from_lists([[n] for n in near]),
        np.zeros(len(q), bool),
    )
    save_eval_set(gt, tmp_path / "gt")
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features/database.npy", db.astype(np.float16))
    np.save(tmp_path / "features/queries.npy", q.astype(np.float16))
    flat = evaluate_features(tmp_path / "features", tmp_path / "gt", [1, 5]).metrics
    approx = evaluate_features(
        tmp_path / "features", tmp_path / "gt", [1, 5], "ivf", {"probe": 4}
    ).metrics
    assert flat["R@1"] == 100.0 and 80.0 <= approx["R@1"] <= 100.0


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("eval.index", "annoy", "eval.index: unknown name 'annoy' (allowed: flat, ivf, hnsw)"),
        ("eval.ivf", {"probes": 4}, "eval.ivf.probes: unknown key 'probes'; did you mean 'probe'?"),
        ("eval.ivf", {"encoding": "pq"}, "eval.ivf.encoding: 'pq' is not one of: sq8, fp16, flat"),
        ("eval.hnsw", {"m": 1}, "eval.hnsw.m: must be >= 2"),
        ("extract.dtype", "bfloat16", "extract.dtype: 'bfloat16' is not one of: float16, float32"),
    ],
)
def test_bad_search_params_give_one_clear_line(path, value, message):
    with pytest.raises(ConfigError) as err:
        validate(with_change(path, value))
    assert message in str(err.value) and "\n" not in str(err.value)
