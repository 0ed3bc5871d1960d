"""kNN + recall@N for an SF-XS-test-sized problem (27,191 database x 1,000 queries x 512-D), against the
reference protocol measured in the same run: faiss IndexFlatL2 search of the top 20, then a per-query Python
loop testing ``np.isin(preds[:n], positives)`` for each N (as the course / benchmark code does).
Ours: vpr.eval.retrieval.search (faiss IndexFlatL2, chunked) + recall_at (vectorised, no per-query loop).

    python benchmarks/bench_knn.py [--quick]
"""
from __future__ import annotations

import time

import numpy as np

from common import standalone, Figure, fmt_spread, spread

NS = (1, 5, 10, 20)


def problem(num_database=27191, num_queries=1000, dim=512, side_m=2000.0, seed=0):
    """Database and queries scattered over a square; descriptors vary smoothly with position (random Fourier
    features, ~20 m correlation) plus noise, so nearby images look alike and recall is neither 0 nor 100."""
    from vpr.data.groundtruth import positives_within
    rng = np.random.default_rng(seed)
    db_xy = rng.uniform(0, side_m, (num_database, 2))
    q_xy = rng.uniform(0, side_m, (num_queries, 2))
    freq = rng.normal(scale=1 / 20.0, size=(2, dim))
    phase = rng.uniform(0, 2 * np.pi, dim)

    def describe(xy, noise):
        d = np.cos(xy @ freq + phase) + noise * rng.normal(size=(len(xy), dim))
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)

    return describe(db_xy, 1.0), describe(q_xy, 3.0), positives_within(db_xy, q_xy, 25.0)


def reference_protocol(database, queries, positive_lists, ns=NS):
    import faiss
    start = time.perf_counter()
    index = faiss.IndexFlatL2(database.shape[1])
    index.add(database)
    _, predictions = index.search(queries, max(ns))
    searched = time.perf_counter()
    recalls = np.zeros(len(ns))
    for q, pred in enumerate(predictions):
        for i, n in enumerate(ns):
            if np.any(np.isin(pred[:n], positive_lists[q])):
                recalls[i:] += 1
                break
    done = time.perf_counter()
    return recalls / len(predictions) * 100, searched - start, done - searched


def ours(database, queries, positives, ns=NS):
    from vpr.eval.retrieval import recall_at, search
    start = time.perf_counter()
    predictions = search(database, queries, max(ns))
    searched = time.perf_counter()
    recalls = recall_at(predictions, positives, len(database), ns)
    done = time.perf_counter()
    return np.array([recalls[n] for n in ns]), searched - start, done - searched


def run(quick: bool = False) -> list[Figure]:
    database, queries, positives = problem()
    positive_lists = [positives[q] for q in range(len(queries))]
    reps = 3 if quick else 9
    ref_total, our_total, ref_search, our_search, ref_recall, our_recall, same = [], [], [], [], [], [], True
    for rep in range(reps + 1):                      # the first round warms up both
        r, rs, rr = reference_protocol(database, queries, positive_lists)
        o, os_, or_ = ours(database, queries, positives)
        same &= bool(np.allclose(r, o))
        if rep:
            ref_total.append(rs + rr), our_total.append(os_ + or_)
            ref_search.append(rs), our_search.append(os_), ref_recall.append(rr), our_recall.append(or_)
    ratio = spread(o / r for o, r in zip(our_total, ref_total))
    recall_ratio = spread(o / r for o, r in zip(our_recall, ref_recall))
    med = lambda v: spread(v)["median"] * 1000   # noqa: E731  ms
    share = med(ref_search) / med(ref_total)
    raw = dict(ratio=ratio, recall_ratio=recall_ratio, ref_search_ms=med(ref_search), ref_loop_ms=med(ref_recall),
               our_search_ms=med(our_search), our_recall_ms=med(our_recall), recalls=o.tolist(), identical=same,
               mean_positives=float(positives.counts.mean()))
    return [
        Figure("kNN + recall / reference protocol (27,191 x 1,000 x 512-D)", f"{ratio['median']:.3f}", "<= 0.5",
               ratio["median"] <= 0.5,
               f"{fmt_spread(ratio)}; reference {med(ref_total):.0f} ms = search {med(ref_search):.0f} + per-query "
               f"loop {med(ref_recall):.0f}; ours {med(our_total):.0f} ms = search {med(our_search):.0f} + recall "
               f"{med(our_recall):.1f}; the exact search both share is {share:.0%} of the reference",
               raw),
        Figure("recall@N: vectorised / per-query loop (same predictions)", f"{recall_ratio['median']:.3f}",
               "for comparison", None, f"{fmt_spread(recall_ratio)}; recalls identical to the reference: {same} "
               f"(R@1/5/10/20 = {', '.join(f'{x:.1f}' for x in o)})", raw),
    ]


if __name__ == "__main__":
    standalone(__doc__, run)
