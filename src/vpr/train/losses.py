"""Metric-learning losses and miners from pytorch-metric-learning, by name.

Builders return PML objects; ``miner: none`` builds ``None``. Settings are the PML arguments.
"""
from __future__ import annotations

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from vpr.registry import Registry, require

LOSSES = Registry("loss", "losses")
MINERS = Registry("miner", "miners")


@LOSSES.register(paper="Hadsell et al., Dimensionality Reduction by Learning an Invariant Mapping, CVPR 2006")
def contrastive(*, pos_margin: float = 0.0, neg_margin: float = 1.0):
    """Pulls positive pairs within pos_margin, pushes negatives beyond neg_margin (the course baseline)."""
    return pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)


@LOSSES.register(paper="Schroff et al., FaceNet, CVPR 2015")
def triplet(*, margin: float = 0.1, swap: bool = False, smooth_loss: bool = False):
    """Triplet margin loss over all (or mined) triplets in the batch."""
    require(margin >= 0, "losses.triplet.margin", f"must be >= 0, got {margin}")
    return pml_losses.TripletMarginLoss(margin=margin, swap=swap, smooth_loss=smooth_loss)


@LOSSES.register(paper="Wang et al., Multi-Similarity Loss, CVPR 2019")
def multisimilarity(*, alpha: float = 1.0, beta: float = 50.0, base: float = 0.0):
    """Multi-Similarity loss (the GSV-Cities / MixVPR recipe: alpha 1, beta 50, base 0)."""
    return pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)


@LOSSES.register(paper="Sun et al., Circle Loss, CVPR 2020")
def circle(*, m: float = 0.4, gamma: float = 80.0):
    """Circle loss: pair similarities re-weighted toward their optimum."""
    require(0 <= m < 1, "losses.circle.m", f"must be in [0, 1), got {m}")
    require(gamma > 0, "losses.circle.gamma", f"must be > 0, got {gamma}")
    return pml_losses.CircleLoss(m=m, gamma=gamma)


@LOSSES.register(paper="Chen et al., SimCLR, ICML 2020 (NT-Xent); Oord et al. 2018 (InfoNCE)")
def ntxent(*, temperature: float = 0.07):
    """Normalised temperature-scaled cross entropy over positive pairs."""
    require(temperature > 0, "losses.ntxent.temperature", f"must be > 0, got {temperature}")
    return pml_losses.NTXentLoss(temperature=temperature)


@MINERS.register()
def none():
    """No mining: the loss sees every pair / triplet of the batch."""
    return None


@MINERS.register("multisimilarity", paper="Wang et al., Multi-Similarity Loss, CVPR 2019")
def multisimilarity_miner(*, epsilon: float = 0.1):
    """Keeps negatives harder than the easiest positive (and positives harder than the hardest negative) +- epsilon."""
    require(epsilon >= 0, "miners.multisimilarity.epsilon", f"must be >= 0, got {epsilon}")
    return pml_miners.MultiSimilarityMiner(epsilon=epsilon)


@MINERS.register(paper="Schroff et al., FaceNet, CVPR 2015")
def triplet_margin(*, margin: float = 0.1, type_of_triplets: str = "semihard"):
    """Triplets violating the margin: all, hard, semihard or easy."""
    require(type_of_triplets in ("all", "hard", "semihard", "easy"), "miners.triplet_margin.type_of_triplets",
            f"'{type_of_triplets}' is not one of all, hard, semihard, easy")
    return pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=type_of_triplets)
