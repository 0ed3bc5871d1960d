import numpy as np
import pytest

from vpr.data.groundtruth import Positives, positives_within
from vpr.eval.retrieval import correct_matrix, recall_at, recall_curve, search


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
    assert (
        np.isclose(curve[0], r[1]) and np.isclose(curve[4], r[5]) and np.isclose(curve[19], r[20])
    )


def test_k_larger_than_database_is_capped():
    db = np.eye(3, dtype=np.float32)
    assert search(db, db, 20).shape == (3, 3)


# --- edge cases against an independent brute-force reference --------------------------------------------


def brute_force_recalls(db, q, positive_lists, ns):
    """Recall@N straight from the definition: sort every database image by L2 distance, take the first
    min(N, database size), count the query if one of them is a positive; no positive = a miss."""
    dist = ((q[:, None, :].astype(np.float64) - db[None].astype(np.float64)) ** 2).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")
    out = {}
    for n in ns:
        hits = [bool(set(order[i, :n].tolist()) & set(positive_lists[i])) for i in range(len(q))]
        out[n] = 100.0 * sum(hits) / len(q)
    return out


def _random_set(rng, ndb, nq, dim=8, empty_every=4):
    db = rng.normal(size=(ndb, dim)).astype(np.float32)
    q = rng.normal(size=(nq, dim)).astype(np.float32)
    lists = []
    for i in range(nq):
        if i % empty_every == 0:
            lists.append([])
        else:
            lists.append(
                sorted(
                    rng.choice(
                        ndb, size=int(rng.integers(1, max(2, ndb // 2))), replace=False
                    ).tolist()
                )
            )
    return db, q, lists


def test_database_smaller_than_the_largest_n_keeps_queries_without_positives_as_misses():
    # the measured case: 12 database images, 5 queries of which one has no positive -> R@20 = 80, not 100
    rng = np.random.default_rng(0)
    db, q, _ = _random_set(rng, 12, 5)
    lists = [[], [0], [3, 4], [11], [5]]
    positives = Positives.from_lists(lists)
    ns = [1, 5, 10, 20]
    ours = recall_at(search(db, q, 20), positives, len(db), ns)
    assert ours[20] == 80.0
    assert ours == pytest.approx(brute_force_recalls(db, q, lists, ns))


def test_three_image_database_does_not_count_a_query_without_positive_at_5():
    db = np.eye(3, dtype=np.float32)
    positives = Positives.from_lists([[]])
    assert recall_at(search(db, db[:1], 20), positives, 3, [1, 5]) == {1: 0.0, 5: 0.0}


def test_recall_matches_brute_force_for_many_database_sizes_and_n():
    rng = np.random.default_rng(1)
    ns = [1, 2, 5, 10, 20, 50]
    for ndb in (1, 2, 3, 7, 12, 20, 21, 60):
        db, q, lists = _random_set(rng, ndb, 9)
        positives = Positives.from_lists(lists)
        assert recall_at(search(db, q, max(ns)), positives, ndb, ns) == pytest.approx(
            brute_force_recalls(db, q, lists, ns)
        ), ndb
        curve = recall_curve(search(db, q, 25), positives, ndb)
        assert curve.tolist() == pytest.approx(
            [brute_force_recalls(db, q, lists, [n])[n] for n in range(1, len(curve) + 1)]
        ), ndb


def test_night_subset_recall_is_right_on_a_small_database(tmp_path):
    from vpr.data.groundtruth import EvalSet, save_eval_set
    from vpr.eval.evaluate import evaluate_features

    rng = np.random.default_rng(2)
    db, q, lists = _random_set(rng, 4, 8, empty_every=2)
    night = np.arange(8) % 2 == 0  # the night queries are exactly those without positives
    gt = EvalSet(
        np.array([f"d{i}" for i in range(4)]),
        np.array([f"q{i}" for i in range(8)]),
        np.zeros((4, 2)),
        np.zeros((8, 2)),
        Positives.from_lists(lists),
        night,
    )
    save_eval_set(gt, tmp_path / "gt")
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "database.npy", db)
    np.save(tmp_path / "features" / "queries.npy", q)
    m = evaluate_features(tmp_path / "features", tmp_path / "gt", [1, 5, 10, 20]).metrics
    assert m["night"]["R@20"] == 0.0 and m["R@20"] == 50.0


def test_n_beyond_the_retrieved_k_is_refused_when_the_database_is_larger():
    db = np.eye(8, dtype=np.float32)
    positives = Positives.from_lists([[7]])
    with pytest.raises(ValueError, match="retrieved"):
        recall_at(search(db, db[:1], 2), positives, 8, [1, 5])


def test_correct_matrix_with_unsorted_or_no_positives_matches_isin():
    rng = np.random.default_rng(3)
    preds = rng.integers(-1, 30, size=(6, 5))
    lists = [rng.choice(30, size=size, replace=False) for size in (0, 3, 7, 1, 0, 12)]  # not sorted
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    positives = Positives(offsets, np.concatenate(lists).astype(np.int64))
    expect = [
        [p >= 0 and p in set(lists[i].tolist()) for p in row]
        for i, row in enumerate(preds.tolist())
    ]
    assert correct_matrix(preds, positives, 30).tolist() == expect
    assert not correct_matrix(
        preds, Positives(np.zeros(7, np.int64), np.zeros(0, np.int64)), 30
    ).any()


def test_recall_on_a_memory_mapped_float16_database_matches_brute_force(tmp_path):
    rng = np.random.default_rng(4)
    db, q, lists = _random_set(rng, 500, 40, dim=16)
    np.save(tmp_path / "db.npy", db.astype(np.float16))
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    ns = [1, 5, 10, 20]
    assert recall_at(
        search(mapped, q, 20), Positives.from_lists(lists), len(db), ns
    ) == pytest.approx(brute_force_recalls(mapped, q, lists, ns))
