"""Every kind of choice in one table: where its name is set, where its settings live, its entries, and the
module that builds them.

    loss: circle  ->  KINDS["loss"]: chosen by the top-level key ``loss``, settings in ``losses.circle``,
                      entry choices.LOSSES["circle"], built by vpr.train.losses (``circle``)
"""

from __future__ import annotations

from dataclasses import dataclass

from vpr.config import choices
from vpr.config.settings import Entry, interval, number, one_of, positive, probability

_ENCODING = one_of(
    "sq8", "sq8 | fp16 | flat (float32): how the index stores vectors", ("sq8", "fp16", "flat")
)
_CHUNK = number(65536, "database rows searched at a time (memory ~ one chunk)", 1)

METHODS = {
    "places": Entry(
        "P places x K images per batch, a metric-learning loss and miner (`loss`, `miner`, `sampler`).",
        "Ali-bey et al., GSV-Cities, Neurocomputing 2022; the course template",
    ),
    "triplet_mining": Entry(
        "Query + nearest positive (<10 m, in feature space) + 10 hardest negatives (>25 m) mined from a "
        "database sample refreshed every few hundred queries; triplet margin loss (`data.mining` set).",
        "Berton et al., Deep Visual Geo-localization Benchmark, CVPR 2022; Arandjelovic et al., NetVLAD, CVPR 2016",
        {
            "queries_per_epoch": number(400, "training queries per epoch", 1),
            "cache_refresh_rate": number(
                200, "queries between two refreshes of the descriptor cache", 1
            ),
            "queries_per_batch": number(
                4, "queries per batch (each with 1 positive + the negatives)", 1
            ),
            "negatives": number(10, "hardest negatives per query", 1),
            "negatives_sample": number(
                300, "database images sampled per refresh to mine from (partial mining)", 1
            ),
            "positive_radius_m": positive(
                10.0, "positives: nearest in feature space within this distance"
            ),
            "negative_radius_m": positive(25.0, "negatives: beyond this distance"),
            "margin": number(0.1, "triplet margin", 0.0),
        },
        lambda s: (
            None
            if s["positive_radius_m"] < s["negative_radius_m"]
            else "positive_radius_m must be below negative_radius_m"
        ),
    ),
    "cosplace": Entry(
        "Classes = UTM cells (M m) x heading bins (alpha deg); groups keep adjacent classes apart (N, L); one "
        "CosFace head per group, groups rotating by epoch.",
        "Berton et al., Rethinking Visual Geo-localization for Large-Scale Applications (CosPlace), CVPR 2022",
        {
            "M": positive(10.0, "cell size in metres"),
            "alpha": number(30.0, "heading bin in degrees", 0.0, 360.0, lo_open=True),
            "N": number(5, "cells between two classes of a group, per axis", 2),
            "L": number(2, "heading groups", 1),
            "groups_num": number(8, "groups trained (one per epoch, rotating)", 1),
            "min_images_per_class": number(2, "classes with fewer images are dropped", 1),
            "batch_size": number(32, "images per batch", 2),
            "margin": number(0.4, "CosFace margin", 0.0),
            "scale": positive(30.0, "CosFace scale"),
            "classifiers_lr": positive(0.01, "learning rate of the heads"),
        },
    ),
    "self_supervised": Entry(
        "Label-free: VICReg between two augmented views of random training images (settings: "
        "self_supervised).",
        "Bardes et al., VICReg, ICLR 2022",
        {"batch_size": number(64, "images per batch", 2)},
    ),
}

_P = probability(0.5, "probability")
AUGMENTATIONS = {
    "randaugment": Entry(
        "RandAugment: num_ops random ops of the given magnitude (the course uses num_ops 3).",
        "Cubuk et al., RandAugment, NeurIPS 2020",
        {
            "num_ops": number(2, "operations per image", 0),
            "magnitude": number(9, "magnitude", 0, 30),
        },
    ),
    "color_jitter": Entry(
        "Random brightness, contrast, saturation and hue changes.",
        "",
        {
            "brightness": number(0.4, "brightness jitter", 0.0),
            "contrast": number(0.4, "contrast", 0.0),
            "saturation": number(0.4, "saturation", 0.0),
            "hue": number(0.0, "hue", 0.0, 0.5),
        },
    ),
    "brightness": Entry(
        "Brightness factor drawn in [min, max] (min = max: a fixed factor), applied with probability p.",
        "course reports: darkened training images for night queries",
        {
            "min": number(0.3, "lowest factor", 0.0),
            "max": number(1.0, "highest factor", 0.0),
            "p": _P,
        },
        lambda s: None if s["min"] <= s["max"] else "min must be <= max",
    ),
    "random_erasing": Entry(
        "Erase a random rectangle: variant standard (anywhere), hard (lower half only), soft "
        "(lower:upper 3:1).",
        "Zhong et al., Random Erasing Data Augmentation, AAAI 2020",
        {
            "p": _P,
            "scale": interval([0.02, 0.2], "area fraction", 0.0, 1.0),
            "ratio": interval([0.3, 3.3], "aspect ratio", 1e-3),
            "variant": one_of("standard", "standard | hard | soft", ("standard", "hard", "soft")),
            "value": number(0.0, "fill value", 0.0, 1.0),
        },
    ),
    "random_perspective": Entry(
        "Random perspective warp (viewpoint change).",
        "",
        {"distortion_scale": number(0.3, "distortion", 0.0, 1.0), "p": _P},
    ),
    "random_resized_crop": Entry(
        "Random crop of a fraction ``scale`` of the area with aspect in ``ratio``, resized to "
        "the training size.",
        "",
        {
            "scale": interval([0.6, 1.0], "area fraction", 1e-3, 1.0),
            "ratio": interval([1.2, 1.45], "aspect ratio", 1e-3),
        },
    ),
    "horizontal_flip": Entry(
        "Mirror the image left-right (a street seen from the other side of the road looks "
        "mirrored).",
        "",
        {"p": _P},
    ),
    "synthetic_night": Entry(
        "Darken with a gamma, cool the colour, add lit points and noise.",
        "course reports: day-to-night style transfer, here a hand-made approximation",
        {
            "p": probability(0.3, "probability"),
            "gamma": interval([1.5, 2.5], "gamma", 0.1),
            "brightness": interval([0.3, 0.6], "brightness factor", 0.0, 1.0),
            "lit_points": number(12, "lit points at most", 0),
            "noise": number(0.04, "noise std", 0.0),
        },
    ),
}

INDEXES = {
    "flat": Entry(
        "Exact search over the whole database, a chunk of rows at a time (the reference protocol's ranking).",
        "exact search, as faiss IndexFlatL2 (faiss.knn per chunk, merged in a ResultHeap)",
        {"chunk_rows": _CHUNK},
    ),
    "ivf": Entry(
        "Inverted file: k-means cells (lists; null = sqrt(n)), search the ``probe`` nearest cells; approximate.",
        "Jegou et al., Product Quantization for Nearest Neighbor Search, TPAMI 2011 (IVF); faiss",
        {
            "lists": number(
                None, "k-means cells; null = sqrt(database size)", 1, integer=True, nullable=True
            ),
            "probe": number(32, "cells searched", 1),
            "encoding": _ENCODING,
            "chunk_rows": _CHUNK,
        },
    ),
    "hnsw": Entry(
        "Graph search (HNSW, m links per node); approximate, no training, slow to build on large databases.",
        "Malkov & Yashunin, Hierarchical Navigable Small World graphs, TPAMI 2018; faiss",
        {
            "m": number(32, "links per node", 2),
            "ef_construction": number(40, "build breadth", 1),
            "ef_search": number(128, "search breadth", 1),
            "encoding": _ENCODING,
            "chunk_rows": _CHUNK,
        },
    ),
}


@dataclass(frozen=True)
class Kind:
    """One kind of choice: the key naming the choice, the section holding each entry's settings."""

    key: str  # e.g. "loss" (top level), "train.method", "eval.index", "augment" (a list)
    section: str  # e.g. "losses", "methods", "eval", "augment"
    entries: dict
    default: str | None  # the shipped choice (None for the augment list)
    builders: (
        str  # the module whose registry builds each entry (a function registered under its name)
    )


KINDS = {
    "backbone": Kind(
        "backbone", "backbones", choices.BACKBONES, "efficientnet_lite0", "vpr.models.backbones"
    ),
    "aggregator": Kind(
        "aggregator", "aggregators", choices.AGGREGATORS, "gem", "vpr.models.aggregators"
    ),
    "loss": Kind("loss", "losses", choices.LOSSES, "multisimilarity", "vpr.train.losses"),
    "miner": Kind("miner", "miners", choices.MINERS, "multisimilarity", "vpr.train.losses"),
    "optimizer": Kind("optimizer", "optimizers", choices.OPTIMIZERS, "adam", "vpr.train.optim"),
    "scheduler": Kind(
        "scheduler", "schedulers", choices.SCHEDULERS, "multistep", "vpr.train.optim"
    ),
    "sampler": Kind("sampler", "samplers", choices.SAMPLERS, "places", "vpr.data.samplers"),
    "method": Kind("train.method", "methods", METHODS, "places", "vpr.train.methods"),
    "augmentation": Kind("augment", "augment", AUGMENTATIONS, None, "vpr.data.transforms"),
    "index": Kind("eval.index", "eval", INDEXES, "flat", "vpr.eval.knn"),
}
TOP_LEVEL_CHOICES = ("backbone", "aggregator", "loss", "miner", "optimizer", "scheduler", "sampler")
