import numpy as np

from vpr.data.groundtruth import Positives, positives_within
from vpr.eval.retrieval import recall_at, recall_curve, search


def reference_recalls(predictions, positives, ns):
    """The reference protocol, query by query (as in the course / benchmark code)."""
    correct = np.zeros(len(ns))
    for q, pred in enumerate(predictions):
        for i, n in enumerate(ns):
            if np.any(np.isin(pred[:n], positives[q])):
                correct[i:] += 1
                break
    return correct / len(predictions) * 100


def _problem(seed, nq=300, ndb=1000, dim=32):
    rng = np.random.default_rng(seed)
    db_utm = rng.uniform(0, 1000, (ndb, 2))
    q_utm = rng.uniform(-50, 1050, (nq, 2))
    positives = positives_within(db_utm, q_utm, 25)
    db = rng.normal(size=(ndb, dim)).astype(np.float32)
    q = rng.normal(size=(nq, dim)).astype(np.float32)
    # make a third of the queries close to one of their positives so recalls are not all ~0
    for i in range(0, nq, 3):
        if len(positives[i]):
            q[i] = db[positives[i][0]] + rng.normal(scale=0.8, size=dim)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return db, q, positives


def test_recall_agrees_exactly_with_the_reference_loop():
    for seed in range(3):
        db, q, positives = _problem(seed)
        assert (positives.counts == 0).any()
        preds = search(db, q, 20)
        ns = [1, 5, 10, 20]
        ours = recall_at(preds, positives, len(db), ns)
        ref = reference_recalls(preds, positives, ns)
        assert [ours[n] for n in ns] == ref.tolist()


def test_queries_without_positives_count_as_misses():
    db = np.eye(4, dtype=np.float32)
    q = np.eye(4, dtype=np.float32)
    positives = Positives.from_lists([[0], [1], [], []])
    r = recall_at(search(db, q, 2), positives, 4, [1, 2])
    assert r == {1: 50.0, 2: 50.0}


def test_search_matches_brute_force_and_is_nearest_first():
    db, q, _ = _problem(5, nq=50, ndb=200)
    preds = search(db, q, 10)
    dist = ((q[:, None] - db[None]) ** 2).sum(-1)
    brute = np.argsort(dist, axis=1, kind="stable")[:, :10]
    d_ours = np.take_along_axis(dist, preds, 1)
    d_brute = np.take_along_axis(dist, brute, 1)
    assert np.allclose(d_ours, d_brute, atol=1e-5)


def test_recall_curve_is_cumulative_and_matches_recall_at():
    db, q, positives = _problem(7)
    preds = search(db, q, 20)
    curve = recall_curve(preds, positives, len(db))
    assert np.all(np.diff(curve) >= 0)
    r = recall_at(preds, positives, len(db), [1, 5, 20])
    assert np.isclose(curve[0], r[1]) and np.isclose(curve[4], r[5]) and np.isclose(curve[19], r[20])


def test_k_larger_than_database_is_capped():
    db = np.eye(3, dtype=np.float32)
    assert search(db, db, 20).shape == (3, 3)
