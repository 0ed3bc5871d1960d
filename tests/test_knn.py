"""Large-database evaluation: exact search in chunks over memory-mapped float16 descriptors, approximate
indexes by name, and the params that choose them."""
import os

import faiss
import numpy as np
import pytest

from tests.test_config import with_change
from vpr.config import validate
from vpr.data.groundtruth import EvalSet, Positives, save_eval_set
from vpr.errors import ConfigError
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


@pytest.mark.parametrize("chunk_rows", [100_000, 1000, 777])
def test_flat_search_in_chunks_returns_the_faiss_flat_neighbours(tmp_path, chunk_rows):
    db, q = _clustered(0)
    np.save(tmp_path / "db.npy", db.astype(np.float16))
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    reference = _faiss_flat(mapped, q, 20)   # the float16 values, searched in one piece
    assert (flat_search(mapped, q, 20, chunk_rows=chunk_rows) == reference).all()
    assert (flat_search(db, q, 20, chunk_rows=chunk_rows) == _faiss_flat(db, q, 20)).all()


def test_k_larger_than_the_database_returns_every_row():
    db, q = _clustered(1, nb=7, nq=3)
    out = flat_search(db, q, 20, chunk_rows=3)
    assert out.shape == (3, 7) and all(sorted(row) == list(range(7)) for row in out)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads resident memory from /proc")
def test_chunks_of_a_memory_mapped_file_do_not_stay_resident(tmp_path):
    rows, dim = 65536, 256                        # 32 MiB of float16
    np.save(tmp_path / "big.npy", np.ones((rows, dim), np.float16))

    def file_pages_mib():
        for line in open("/proc/self/status"):
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024

    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    before, peak = file_pages_mib(), 0.0
    for _, chunk in iter_chunks(mapped, 4096):    # 2 MiB per chunk
        assert chunk.dtype == np.float32 and chunk.sum() == chunk.size
        peak = max(peak, file_pages_mib() - before)
    assert peak < 8, f"{peak:.1f} MiB of the file stayed resident"
    np.asarray(mapped, dtype=np.float32).sum()    # the naive way keeps all 32 MiB resident
    assert file_pages_mib() - before > 24


@pytest.mark.parametrize("index,settings", [("ivf", {"probe": 8}), ("ivf", {"encoding": "sq8", "lists": 20}),
                                            ("hnsw", {}), ("hnsw", {"encoding": "flat", "m": 8})])
def test_approximate_indexes_find_most_nearest_neighbours(index, settings):
    db, q = _clustered(2)
    exact = _faiss_flat(db, q, 1)[:, 0]
    found = knn(db.astype(np.float16), q, 10, index, settings)
    assert found.shape == (len(q), 10)
    assert (found[:, 0] == exact).mean() > 0.8


def test_missing_results_of_an_approximate_index_never_count_as_hits():
    positives = Positives.from_lists([[4], [0]])
    predictions = np.array([[-1, -1], [3, -1]])   # -1 = nothing found; q=1's key -1 + 1*5 = 4 must not match q=0
    assert recall_at(predictions, positives, 5, [1, 2]) == {1: 0.0, 2: 0.0}


def test_evaluate_with_an_approximate_index(tmp_path):
    db, q = _clustered(3, nb=2000, nq=100)
    rng = np.random.default_rng(0)
    db_utm = rng.uniform(0, 500, (len(db), 2))
    near = _faiss_flat(db, q, 1)[:, 0]
    q_utm = db_utm[near] + 1.0                    # the nearest descriptor is a positive
    gt = EvalSet(np.array([f"db/{i}.jpg" for i in range(len(db))]), np.array([f"q/{i}.jpg" for i in range(len(q))]),
                 db_utm, q_utm, Positives.from_lists([[n] for n in near]), np.zeros(len(q), bool))
    save_eval_set(gt, tmp_path / "gt")
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features/database.npy", db.astype(np.float16))
    np.save(tmp_path / "features/queries.npy", q.astype(np.float16))
    flat = evaluate_features(tmp_path / "features", tmp_path / "gt", [1, 5]).metrics
    approx = evaluate_features(tmp_path / "features", tmp_path / "gt", [1, 5], "ivf", {"probe": 4}).metrics
    assert flat["R@1"] == 100.0 and 80.0 <= approx["R@1"] <= 100.0


@pytest.mark.parametrize("path,value,message", [
    ("eval.index", "annoy", "eval.index: unknown name 'annoy' (allowed: flat, ivf, hnsw)"),
    ("eval.ivf", {"probes": 4}, "eval.ivf.probes: unknown key 'probes'; did you mean 'probe'?"),
    ("eval.ivf", {"encoding": "pq"}, "eval.ivf.encoding: 'pq' is not one of: sq8, fp16, flat"),
    ("eval.hnsw", {"m": 1}, "eval.hnsw.m: must be >= 2"),
    ("extract.dtype", "bfloat16", "extract.dtype: 'bfloat16' is not one of: float16, float32"),
])
def test_bad_search_params_give_one_clear_line(path, value, message):
    with pytest.raises(ConfigError) as err:
        validate(with_change(path, value))
    assert message in str(err.value) and "\n" not in str(err.value)
