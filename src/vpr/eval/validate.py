"""Recall of a model on an evaluation set, in memory: the training loop's validation."""
from __future__ import annotations

from vpr.data.groundtruth import EvalSet
from vpr.eval.extract import compute_descriptors
from vpr.eval.retrieval import recall_at, search


def evaluate_model(model, eval_set: EvalSet, prep, ns=(1, 5, 10, 20), batch_size: int = 64,
                   num_workers: int = 0, device: str = "cpu") -> dict:
    """Recall@N (percent) of ``model`` on ``eval_set``: keys 'R@1', 'R@5', ... ``prep``: the image preparation
    (vpr.eval.prepare.ImagePrep, or a size to stretch to), as the extract stage does it."""
    database = compute_descriptors(model, eval_set.database_paths, prep, batch_size, num_workers, device,
                                   desc="val database")
    queries = compute_descriptors(model, eval_set.queries_paths, prep, batch_size, num_workers, device,
                                  desc="val queries")
    predictions = search(database, queries, max(ns))
    recalls = recall_at(predictions, eval_set.positives, eval_set.num_database, ns)
    return {f"R@{n}": r for n, r in recalls.items()}
