"""Triplet training with hard-negative mining on a database/queries set, following the protocol of the
VG benchmark (Berton et al., CVPR 2022) and NetVLAD (Arandjelovic et al., CVPR 2016):

* a query's positive is its nearest database image *in feature space* among those within 10 m;
* its negatives are the `negatives` (10) database images nearest in feature space among those farther
  than 25 m, searched in a random subset of `negatives_sample` database images ("partial" mining);
* the cache of descriptors is refreshed every `cache_refresh_rate` queries, with the current model;
* loss: triplet margin (0.1) on (query, positive, negative) for each negative.
Settings: ``methods.triplet_mining``; the set: ``data.mining`` (its ground truth in data/gt/train/mining).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vpr.data.groundtruth import positives_within
from vpr.errors import ConfigError, require
from vpr.eval.extract import compute_descriptors
from vpr.train.context import Context, Method
from vpr.train.objectives import Objective


class TripletMiner:
    """Mines (query, positive, negatives) triplets for one chunk of queries with the current model."""

    def __init__(
        self,
        mining_set,
        image_size,
        positive_radius_m: float,
        negative_radius_m: float,
        negatives: int,
        negatives_sample: int,
        batch_size: int,
        device: str,
    ):
        self.set = mining_set
        self.image_size, self.negatives, self.negatives_sample = (
            image_size,
            negatives,
            negatives_sample,
        )
        self.batch_size, self.device = batch_size, device
        db, q = mining_set.database_utm, mining_set.queries_utm
        self.positives = positives_within(db, q, positive_radius_m)  # candidates for the positive
        self.soft_positives = positives_within(db, q, negative_radius_m)  # never used as negatives
        self.usable = np.nonzero(self.positives.counts > 0)[0]  # queries with a positive (as VG)
        require(
            len(self.usable) > 0,
            "data.mining",
            f"no query has a database image within {positive_radius_m} m",
        )

    @torch.no_grad()
    def mine(self, model, queries: np.ndarray, rng: np.random.Generator):
        """[(query id, positive db id, [negative db ids])] for ``queries``."""
        s = self.set
        sampled = rng.choice(
            s.num_database, min(self.negatives_sample, s.num_database), replace=False
        )
        pos_ids = np.unique(np.concatenate([self.positives[q] for q in queries]))
        db_ids = np.unique(np.concatenate([sampled, pos_ids]))
        describe = lambda paths, what: compute_descriptors(  # noqa: E731
            model, paths, self.image_size, self.batch_size, 0, self.device, desc=f"mining {what}"
        )
        q_desc = describe(s.queries_paths[queries], "queries")
        db_desc = dict(zip(db_ids.tolist(), describe(s.database_paths[db_ids], "database")))
        sampled_desc = np.stack([db_desc[i] for i in sampled])
        triplets = []
        for qd, q in zip(q_desc, queries):
            cands = self.positives[q]
            dist = ((np.stack([db_desc[i] for i in cands]) - qd) ** 2).sum(1)
            positive = int(cands[np.argmin(dist)])
            allowed = ~np.isin(sampled, self.soft_positives[q])
            if allowed.sum() < self.negatives:
                continue
            neg_dist = ((sampled_desc[allowed] - qd) ** 2).sum(1)
            hardest = sampled[allowed][np.argsort(neg_dist, kind="stable")[: self.negatives]]
            triplets.append((int(q), positive, hardest.astype(int).tolist()))
        return triplets


class TripletObjective(Objective):
    """Mean triplet margin loss over (query, positive, negative_i) of every query in the batch."""

    name = "triplet_loss"

    def __init__(self, margin: float):
        super().__init__()
        self.loss = nn.TripletMarginLoss(margin=margin, p=2, reduction="mean")

    def main_loss(self, model, batch, out):
        anchors, positives, negatives = batch["triplets"]
        d = out["descriptors"]
        return self.loss(d[anchors], d[positives], d[negatives])


def triplet_indices(queries_per_batch: int, negatives: int):
    """Index tensors (anchor, positive, negative) into a batch laid out [q, p, n_1..n_N] per query."""
    group = 2 + negatives
    anchors = torch.arange(queries_per_batch).repeat_interleave(negatives) * group
    return anchors, anchors + 1, anchors + 2 + torch.arange(negatives).repeat(queries_per_batch)


def triplet_mining(
    ctx: Context,
    *,
    queries_per_epoch: int,
    cache_refresh_rate: int,
    queries_per_batch: int,
    negatives: int,
    negatives_sample: int,
    positive_radius_m: float,
    negative_radius_m: float,
    margin: float,
):
    """Query + nearest positive (<10 m, in feature space) + hardest negatives (>25 m) from a partial database
    sample, cache refreshed every cache_refresh_rate queries; triplet margin loss."""
    if ctx.data.mining is None:
        raise ConfigError(
            "data.mining: train.method triplet_mining needs a database/queries training set; set "
            "data.mining (e.g. synth/mining with synthetic.extra_sets: [mining]) and rerun build_gt"
        )
    t = ctx.cfg.train
    miner = TripletMiner(
        ctx.data.mining,
        t.image_size,
        positive_radius_m,
        negative_radius_m,
        negatives,
        negatives_sample,
        ctx.cfg.extract.batch_size,
        ctx.device,
    )
    s = ctx.data.mining
    all_paths = np.concatenate([s.queries_paths, s.database_paths])  # queries first, then database
    dataset = ctx.dataset(all_paths)
    per_epoch = min(queries_per_epoch, len(miner.usable))
    steps = per_epoch // queries_per_batch
    require(
        steps >= 1,
        "methods.triplet_mining.queries_per_batch",
        f"is larger than the usable queries per epoch ({per_epoch})",
    )
    layout = triplet_indices(queries_per_batch, negatives)

    def batches(epoch: int):
        rng = np.random.default_rng([ctx.cfg.seed, epoch, 11])
        chosen = rng.permutation(miner.usable)[: steps * queries_per_batch]
        for start in range(0, len(chosen), cache_refresh_rate):
            chunk = chosen[start : start + cache_refresh_rate]
            was_training = ctx.model.training
            triplets = miner.mine(ctx.model, chunk, rng)
            ctx.model.train(was_training)
            groups = [
                triplets[i : i + queries_per_batch]
                for i in range(0, len(triplets), queries_per_batch)
            ]
            groups = [g for g in groups if len(g) == queries_per_batch]
            plan = [
                [
                    idx
                    for q, p, negs in g
                    for idx in (q, s.num_queries + p, *(s.num_queries + n for n in negs))
                ]
                for g in groups
            ]
            for batch in ctx.loader(dataset, plan, epoch * 1000 + start // cache_refresh_rate):
                batch["triplets"] = layout
                yield batch

    return Method(TripletObjective(margin), batches, steps)
