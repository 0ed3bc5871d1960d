"""Metric-learning losses and miners from pytorch-metric-learning, by name (declared, with their settings,
in vpr.config.choices).

Loss builders take ``(num_classes, embedding_size)`` from the code: the classification-style losses
(cosface, arcface, proxy_anchor) own learnable weights (class centres / proxies); these get their own
optimizer parameter group with learning rate ``weights_lr`` and are saved in checkpoints.
Miner builders return a PML miner, or ``None`` for ``none``.
"""

from __future__ import annotations

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from vpr.registry import Registry

LOSSES = Registry("loss")
MINERS = Registry("miner")


def _with_weights_lr(loss, weights_lr: float):
    loss.weights_lr = weights_lr
    return loss


@LOSSES.register()
def contrastive(num_classes: int, embedding_size: int, *, pos_margin: float, neg_margin: float):
    return pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)


@LOSSES.register()
def triplet(num_classes: int, embedding_size: int, *, margin: float, swap: bool, smooth_loss: bool):
    return pml_losses.TripletMarginLoss(margin=margin, swap=swap, smooth_loss=smooth_loss)


@LOSSES.register()
def multisimilarity(
    num_classes: int, embedding_size: int, *, alpha: float, beta: float, base: float
):
    return pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)


@LOSSES.register()
def circle(num_classes: int, embedding_size: int, *, m: float, gamma: float):
    return pml_losses.CircleLoss(m=m, gamma=gamma)


@LOSSES.register()
def ntxent(num_classes: int, embedding_size: int, *, temperature: float):
    return pml_losses.NTXentLoss(temperature=temperature)


@LOSSES.register()
def supcon(num_classes: int, embedding_size: int, *, temperature: float):
    return pml_losses.SupConLoss(temperature=temperature)


@LOSSES.register()
def fastap(num_classes: int, embedding_size: int, *, num_bins: int):
    return pml_losses.FastAPLoss(num_bins=num_bins)


@LOSSES.register()
def cosface(
    num_classes: int, embedding_size: int, *, margin: float, scale: float, weights_lr: float
):
    return _with_weights_lr(
        pml_losses.CosFaceLoss(num_classes, embedding_size, margin=margin, scale=scale), weights_lr
    )


@LOSSES.register()
def arcface(
    num_classes: int, embedding_size: int, *, margin: float, scale: float, weights_lr: float
):
    return _with_weights_lr(
        pml_losses.ArcFaceLoss(num_classes, embedding_size, margin=margin, scale=scale), weights_lr
    )


@LOSSES.register()
def proxy_anchor(
    num_classes: int, embedding_size: int, *, margin: float, alpha: float, weights_lr: float
):
    return _with_weights_lr(
        pml_losses.ProxyAnchorLoss(num_classes, embedding_size, margin=margin, alpha=alpha),
        weights_lr,
    )


@MINERS.register()
def none():
    return None


@MINERS.register("multisimilarity")
def multisimilarity_miner(*, epsilon: float):
    return pml_miners.MultiSimilarityMiner(epsilon=epsilon)


@MINERS.register()
def triplet_margin(*, margin: float, type_of_triplets: str):
    return pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=type_of_triplets)


@MINERS.register()
def pair_margin(*, pos_margin: float, neg_margin: float):
    return pml_miners.PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin)


@MINERS.register()
def distance_weighted(*, cutoff: float, nonzero_loss_cutoff: float):
    return pml_miners.DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)


@MINERS.register()
def batch_hard():
    return pml_miners.BatchHardMiner()


@MINERS.register()
def batch_easy_hard(*, pos_strategy: str, neg_strategy: str):
    return pml_miners.BatchEasyHardMiner(pos_strategy=pos_strategy, neg_strategy=neg_strategy)
