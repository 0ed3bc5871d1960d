"""Metric-learning losses and miners from pytorch-metric-learning, by name.

Loss builders take ``(num_classes, embedding_size)`` from the code: the classification-style losses
(cosface, arcface, proxy_anchor) own learnable weights (class centres / proxies); these get their own
optimizer parameter group with learning rate ``weights_lr`` and are saved in checkpoints.
Miner builders return a PML miner, or ``None`` for ``none``.
"""
from __future__ import annotations

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from vpr.registry import Registry, require

LOSSES = Registry("loss", "losses")
MINERS = Registry("miner", "miners")


def _positive(key: str, value: float) -> None:
    require(value > 0, key, f"must be > 0, got {value}")


def _with_weights_lr(loss, name: str, weights_lr: float):
    _positive(f"losses.{name}.weights_lr", weights_lr)
    loss.weights_lr = weights_lr
    return loss


@LOSSES.register(paper="Hadsell et al., Dimensionality Reduction by Learning an Invariant Mapping, CVPR 2006")
def contrastive(num_classes: int, embedding_size: int, *, pos_margin: float = 0.0, neg_margin: float = 1.0):
    """Pulls positive pairs within pos_margin, pushes negatives beyond neg_margin (the course baseline)."""
    require(pos_margin < neg_margin, "losses.contrastive.neg_margin", "must be larger than pos_margin")
    return pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)


@LOSSES.register(paper="Schroff et al., FaceNet, CVPR 2015")
def triplet(num_classes: int, embedding_size: int, *, margin: float = 0.1, swap: bool = False,
            smooth_loss: bool = False):
    """Triplet margin loss over all (or mined) triplets of the batch."""
    require(margin >= 0, "losses.triplet.margin", f"must be >= 0, got {margin}")
    return pml_losses.TripletMarginLoss(margin=margin, swap=swap, smooth_loss=smooth_loss)


@LOSSES.register(paper="Wang et al., Multi-Similarity Loss, CVPR 2019")
def multisimilarity(num_classes: int, embedding_size: int, *, alpha: float = 1.0, beta: float = 50.0,
                    base: float = 0.0):
    """Multi-Similarity loss (the GSV-Cities / MixVPR recipe: alpha 1, beta 50, base 0)."""
    _positive("losses.multisimilarity.alpha", alpha)
    _positive("losses.multisimilarity.beta", beta)
    return pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)


@LOSSES.register(paper="Sun et al., Circle Loss, CVPR 2020")
def circle(num_classes: int, embedding_size: int, *, m: float = 0.4, gamma: float = 80.0):
    """Circle loss: pair similarities re-weighted toward their optimum."""
    require(0 <= m < 1, "losses.circle.m", f"must be in [0, 1), got {m}")
    _positive("losses.circle.gamma", gamma)
    return pml_losses.CircleLoss(m=m, gamma=gamma)


@LOSSES.register(paper="Chen et al., SimCLR (NT-Xent), ICML 2020; Oord et al., InfoNCE, 2018")
def ntxent(num_classes: int, embedding_size: int, *, temperature: float = 0.07):
    """Normalised temperature-scaled cross entropy over positive pairs."""
    _positive("losses.ntxent.temperature", temperature)
    return pml_losses.NTXentLoss(temperature=temperature)


@LOSSES.register(paper="Khosla et al., Supervised Contrastive Learning, NeurIPS 2020")
def supcon(num_classes: int, embedding_size: int, *, temperature: float = 0.1):
    """Supervised contrastive loss: every same-place image is a positive."""
    _positive("losses.supcon.temperature", temperature)
    return pml_losses.SupConLoss(temperature=temperature)


@LOSSES.register(paper="Cakir et al., Deep Metric Learning to Rank (FastAP), CVPR 2019")
def fastap(num_classes: int, embedding_size: int, *, num_bins: int = 10):
    """FastAP: a differentiable approximation of average precision over distance histograms."""
    require(num_bins >= 2, "losses.fastap.num_bins", f"must be >= 2, got {num_bins}")
    return pml_losses.FastAPLoss(num_bins=num_bins)


@LOSSES.register(paper="Wang et al., CosFace: Large Margin Cosine Loss, CVPR 2018")
def cosface(num_classes: int, embedding_size: int, *, margin: float = 0.35, scale: float = 64.0,
            weights_lr: float = 0.01):
    """Large-margin cosine classification over places; learnable class centres (own lr: weights_lr)."""
    require(0 <= margin < 1, "losses.cosface.margin", f"must be in [0, 1), got {margin}")
    _positive("losses.cosface.scale", scale)
    return _with_weights_lr(pml_losses.CosFaceLoss(num_classes, embedding_size, margin=margin, scale=scale),
                            "cosface", weights_lr)


@LOSSES.register(paper="Deng et al., ArcFace: Additive Angular Margin Loss, CVPR 2019")
def arcface(num_classes: int, embedding_size: int, *, margin: float = 28.6, scale: float = 64.0,
            weights_lr: float = 0.01):
    """Additive angular margin (degrees) classification over places; learnable class centres."""
    require(0 <= margin < 90, "losses.arcface.margin", f"must be an angle in degrees in [0, 90), got {margin}")
    _positive("losses.arcface.scale", scale)
    return _with_weights_lr(pml_losses.ArcFaceLoss(num_classes, embedding_size, margin=margin, scale=scale),
                            "arcface", weights_lr)


@LOSSES.register(paper="Kim et al., Proxy Anchor Loss for Deep Metric Learning, CVPR 2020")
def proxy_anchor(num_classes: int, embedding_size: int, *, margin: float = 0.1, alpha: float = 32.0,
                 weights_lr: float = 0.01):
    """Proxy-Anchor: one learnable proxy per place pulls its images and pushes the others."""
    _positive("losses.proxy_anchor.alpha", alpha)
    return _with_weights_lr(pml_losses.ProxyAnchorLoss(num_classes, embedding_size, margin=margin, alpha=alpha),
                            "proxy_anchor", weights_lr)


@MINERS.register()
def none():
    """No mining: the loss sees every pair / triplet of the batch."""
    return None


@MINERS.register("multisimilarity", paper="Wang et al., Multi-Similarity Loss, CVPR 2019")
def multisimilarity_miner(*, epsilon: float = 0.1):
    """Negatives harder than the easiest positive (and positives harder than the hardest negative) +- epsilon."""
    require(epsilon >= 0, "miners.multisimilarity.epsilon", f"must be >= 0, got {epsilon}")
    return pml_miners.MultiSimilarityMiner(epsilon=epsilon)


@MINERS.register(paper="Schroff et al., FaceNet, CVPR 2015")
def triplet_margin(*, margin: float = 0.1, type_of_triplets: str = "semihard"):
    """Triplets violating the margin: all, hard, semihard or easy."""
    require(type_of_triplets in ("all", "hard", "semihard", "easy"), "miners.triplet_margin.type_of_triplets",
            f"'{type_of_triplets}' is not one of all, hard, semihard, easy")
    return pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=type_of_triplets)


@MINERS.register(paper="pytorch-metric-learning PairMarginMiner")
def pair_margin(*, pos_margin: float = 0.2, neg_margin: float = 0.8):
    """Positive pairs farther than pos_margin and negative pairs closer than neg_margin."""
    require(pos_margin >= 0 and neg_margin >= 0, "miners.pair_margin", "margins must be >= 0")
    return pml_miners.PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin)


@MINERS.register(paper="Wu et al., Sampling Matters in Deep Embedding Learning, ICCV 2017")
def distance_weighted(*, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4):
    """Negatives sampled with weights inverse to the density of distances on the unit sphere."""
    require(0 <= cutoff < nonzero_loss_cutoff, "miners.distance_weighted.cutoff",
            f"must be >= 0 and below nonzero_loss_cutoff ({nonzero_loss_cutoff}), got {cutoff}")
    return pml_miners.DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)


@MINERS.register(paper="Hermans et al., In Defense of the Triplet Loss, 2017")
def batch_hard():
    """For each anchor, its hardest positive and hardest negative in the batch."""
    return pml_miners.BatchHardMiner()


@MINERS.register(paper="Xuan et al., Improved Embeddings with Easy Positive Triplet Mining, WACV 2020")
def batch_easy_hard(*, pos_strategy: str = "easy", neg_strategy: str = "semihard"):
    """Per anchor, a positive and a negative chosen by strategy (easy / semihard / hard / all)."""
    strategies = ("easy", "semihard", "hard", "all")
    require(pos_strategy in strategies, "miners.batch_easy_hard.pos_strategy",
            f"'{pos_strategy}' is not one of {', '.join(strategies)}")
    require(neg_strategy in strategies, "miners.batch_easy_hard.neg_strategy",
            f"'{neg_strategy}' is not one of {', '.join(strategies)}")
    return pml_miners.BatchEasyHardMiner(pos_strategy=pos_strategy, neg_strategy=neg_strategy)
