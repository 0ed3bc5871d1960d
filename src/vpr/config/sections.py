"""The schema of params.yaml's plain sections: every key's type, default (the value params.yaml ships), range
and one-line doc. The README's tables and params.yaml are tested against these declarations."""

from __future__ import annotations

from vpr.config.settings import (
    Setting,
    flag,
    is_int,
    is_number,
    items,
    mapping,
    number,
    one_of,
    positive,
    size,
    text,
)

VAL_METRICS = ("R@1", "R@5", "R@10", "R@20")
QUERY_METHODS = ("single", "central_crop", "five_crops", "nearest_crop", "maj_voting")
SYNTHETIC_EXTRAS = ("mining", "target_night", "night_copies")
NIGHT_RULES = ("note", "brightness", "list")
NIGHT_LISTS_DIR = "data/lists"
SOURCES = ("synthetic", "url", "path")
CONVERTERS = ("cambridge_sv",)


def _aspects(v):
    ok = all(
        isinstance(a, (list, tuple)) and len(a) == 2 and all(is_int(x, 1) and x <= 32 for x in a)
        for a in v
    )
    return (
        None
        if ok and v
        else f"must be a list of [width, height] ratios of small integers, e.g. [[4, 3], [3, 4]], got {v!r}"
    )


def _light_mix(v):
    ok = len(v) == 3 and all(is_number(x) and x >= 0 for x in v) and abs(sum(v) - 1) < 1e-6
    return None if ok else f"must be three fractions (day, dusk, night) summing to 1, got {list(v)}"


SYNTHETIC = {
    "seed": number(0, "same seed -> byte-identical images", 0),
    "image_size": size([72, 96], "[height, width] of the rendered images", minimum=32),
    "train_cities": number(
        3, "training cities (1..6), separate from the val and test cities", 1, 6
    ),
    "train_blocks": number(8, "city size in blocks per side", 1, 20),
    "places_per_city": number(400, "training places per city", 1),
    "max_images_per_place": number(
        6, "each place gets 4..this many images (GSV-XS places have >= 4)", 4
    ),
    "place_separation_m": positive(20.0, "minimum distance between two training places"),
    "val_blocks": number(4, "validation city size in blocks per side", 1, 20),
    "test_blocks": number(6, "test city size in blocks per side", 1, 20),
    "database_spacing_m": positive(10.0, "database views every this many metres, both directions"),
    "val_queries": number(300, "validation queries", 1),
    "test_queries": number(
        1500, "test queries: enough that a 2-point recall difference is measurable", 1
    ),
    "query_aspects": Setting(
        [[4, 3], [4, 3], [3, 4], [3, 2], [16, 9], [1, 1]],
        "width:height of val/test query photos, one drawn per query (repeat one to draw it "
        "more often)",
        list,
        check=_aspects,
    ),
    "style_pool": number(24, "building archetypes per city: fewer = more look-alike places", 1),
    "light_mix": Setting(
        [0.4, 0.3, 0.3],
        "day, dusk, night fractions of queries and training shots",
        list,
        check=_light_mix,
    ),
    "jpeg_quality": number(90, "JPEG quality of the written images", 1, 100),
    "extra_sets": items(
        [],
        "extra sets: mining (database/queries training city) | target_night (unlabeled night "
        "photos) | night_copies (night renders of the training places)",
        lambda x: x in SYNTHETIC_EXTRAS,
        f"one of {', '.join(SYNTHETIC_EXTRAS)}",
    ),
    "mining_queries": number(500, "queries of the mining set", 1),
    "target_images": number(400, "unlabeled night photos of the target_night set", 1),
}

GT = {
    "radius_m": positive(25.0, "a database image within this distance (UTM) is a positive"),
    "train_min_images": number(4, "training places with fewer images are dropped", 2),
    "strict": flag(
        False, "true: images without coordinates or that do not decode fail build_gt (else skipped)"
    ),
    "unlabelled_queries": flag(
        False,
        "true: a query folder whose names carry no coordinates is a query list "
        "(predictions, no recall); false: such a folder fails build_gt",
    ),
    "check_images": one_of(
        "header",
        "none | header (format + end marker) | decode (full decode, ~30x slower)",
        ("none", "header", "decode"),
    ),
    "train_places": one_of(
        "note",
        "how training images form places: note (the name's note field placeID_City, "
        "GSV-XS) | cells (UTM cells x heading classes, CosPlace) | clusters (positions "
        "grouped within place_m x heading classes)",
        ("note", "cells", "clusters"),
    ),
    "place_m": positive(
        10.0, "cells: the cell side; clusters: the radius around each seed position (metres)"
    ),
    "place_headings": number(
        4, "cells, clusters: heading classes per full turn (4 = 90 degrees each)", 1, 360
    ),
}

MODEL = {
    "descriptor_dim": number(
        None,
        "optional FC projection after the aggregator (null = none)",
        1,
        integer=True,
        nullable=True,
    ),
    "normalize": flag(
        True, "L2-normalise the descriptors (false: raw, as the course template tests them)"
    ),
}

TRAIN = {
    "epochs": number(5, "0 = no training: evaluate the initial model", 0),
    "image_size": size(
        [72, 96],
        "[height, width] of training images; null = native size (all of one size)",
        nullable=True,
    ),
    "places_per_batch": number(16, "P places x K images per batch", 2),
    "images_per_place": number(4, "K, drawn without replacement within a place", 2),
    "batches_per_epoch": number(
        None, "batches per epoch; null = one pass over the places", 1, integer=True, nullable=True
    ),
    "warmup_steps": number(0, "linear learning-rate warm-up (optimizer steps)", 0),
    "head_lr": positive(
        None,
        "learning rate of the aggregator + projection; null = the optimizer's lr",
        nullable=True,
    ),
    "amp": flag(False, "mixed precision (CUDA only; a no-op on CPU)"),
    "compile": flag(False, "torch.compile (CUDA only; a no-op on CPU)"),
    "patience": number(3, "early stopping after this many epochs without improvement (0 = off)", 0),
    "select_best_by": one_of("R@1", "validation metric that picks models/best.pt", VAL_METRICS),
    "num_workers": number(1, "training data loader workers", 0),
    "device": one_of("auto", "auto | cpu | cuda", ("auto", "cpu", "cuda")),
    "method": text(
        "places", "places | triplet_mining | cosplace | self_supervised (settings in methods)"
    ),
    "processes": number(
        1,
        "> 1: DDP via torchrun, one process per GPU (gloo on CPU); places_per_batch must divide",
        1,
    ),
    "sync_batchnorm": flag(True, "with processes > 1: BatchNorm statistics over the global batch"),
    "augment_on": one_of(
        "workers",
        "workers (CPU loader workers, per image) | device (the batch on the GPU)",
        ("workers", "device"),
    ),
    "channels_last": flag(True, "channels-last memory format (faster convolutions, CUDA and CPU)"),
}


def _train_check(t: dict) -> tuple[str, str] | None:
    if t["places_per_batch"] % t["processes"]:
        return (
            "train.places_per_batch",
            f"{t['places_per_batch']} places cannot be split evenly over "
            f"train.processes={t['processes']} (each process takes whole places of every batch); use a multiple "
            f"of {t['processes']}",
        )
    return None


def _pca(v):
    unknown = set(v) - {"dim", "fit_on", "whiten", "train_images"}
    if unknown:
        return f"unknown key {sorted(unknown)[0]}; allowed: dim, fit_on, whiten, train_images"
    if v.get("dim") is not None and not is_int(v.get("dim"), 1):
        return f"dim must be a positive integer or null (no PCA), got {v.get('dim')!r}"
    if v.get("fit_on", "train") not in ("train", "database"):
        return f"fit_on: '{v.get('fit_on')}' is not train or database"
    if not isinstance(v.get("whiten", False), bool):
        return "whiten must be true or false"
    return (
        None if is_int(v.get("train_images", 1000), 2) else "train_images must be an integer >= 2"
    )


def _ensemble(v):
    for i, m in enumerate(v):
        if not (
            isinstance(m, dict)
            and len({"checkpoint", "experiment"} & set(m)) == 1
            and set(m) <= {"checkpoint", "experiment", "weight"}
        ):
            return f"item {i}: expected {{checkpoint: <path>}} or {{experiment: <name>}} with an optional weight, got {m!r}"
        if not (is_number(m.get("weight", 1.0)) and m.get("weight", 1.0) > 0):
            return f"item {i}: weight must be a number > 0, got {m.get('weight')!r}"
    return None


EXTRACT = {
    "image_size": size(
        [72, 96], "null = native size (images of one size batched together)", nullable=True
    ),
    "checkpoint": one_of(
        "best",
        "best | last: test models/best.pt (best validation epoch) or models/last.pt",
        ("best", "last"),
    ),
    "resize": one_of(
        "keep_aspect",
        "stretch | keep_aspect | cover_crop: how extraction, validation and localize "
        "bring an image to image_size",
        ("stretch", "keep_aspect", "cover_crop"),
    ),
    "resize_side": one_of(
        "shorter",
        "keep_aspect: the shorter (or longer) side takes image_size's",
        ("shorter", "longer"),
    ),
    "query_method": one_of(
        "single",
        "how queries are prepared and searched (the VG benchmark's test methods)",
        QUERY_METHODS,
    ),
    "majority_weight": number(0.01, "maj_voting: distance bonus per vote", 0.0),
    "batch_size": number(64, "images per extraction batch", 1),
    "num_workers": number(1, "extraction loader workers", 0),
    "device": one_of("auto", "auto | cpu | cuda", ("auto", "cpu", "cuda")),
    "scales": items(
        [1.0],
        "multi-scale testing: resize factors whose descriptors are fused",
        lambda x: is_number(x) and 0.1 <= x <= 4,
        "a factor in [0.1, 4]",
        nonempty=True,
    ),
    "fusion": one_of(
        "avg", "avg | sum | max | min, then re-normalised", ("avg", "sum", "max", "min")
    ),
    "ensemble": Setting(
        [],
        "+ other models: [{checkpoint: path} | {experiment: name}, weight: 1.0]",
        list,
        check=_ensemble,
    ),
    "pca": mapping(
        {"dim": None, "fit_on": "train", "whiten": False, "train_images": 1000},
        "PCA {dim (null = none), fit_on: train | database (transductive: warns), whiten, train_images}",
        check=_pca,
    ),
    "dtype": one_of(
        "float16",
        "descriptors stored as float16 (memory-mapped by evaluate) or float32",
        ("float16", "float32"),
    ),
}


def _recall_values(v):
    ok = v and all(is_int(n, 1) for n in v) and list(v) == sorted(set(v))
    return None if ok else f"must be increasing positive integers, got {list(v)}"


EVAL = {
    "recall_values": Setting([1, 5, 10, 20], "N of recall@N", list, check=_recall_values),
    "index": text(
        "flat", "kNN: flat (exact, in chunks) | ivf | hnsw (approximate, for very large databases)"
    ),
    # eval.flat / eval.ivf / eval.hnsw: the index settings, declared in vpr.config.choices
}

VIZ = {
    "num_queries": number(8, "prediction pictures per evaluation set", 0),
    "top_k": number(5, "matches per picture", 1, 20),
    "only_wrong": flag(False, "keep only queries whose top-1 prediction is wrong"),
    "curve_max_n": number(50, "recall@N curve for N = 1 .. this", 1),
    "seed": number(0, "which queries are drawn", 0),
}

DOMAIN_ADAPTATION = {
    "enabled": flag(
        False, "a domain classifier behind a gradient-reversal layer, on data.target images"
    ),
    "weight": number(0.1, "weight of the domain loss", 0.0),
    "grl_lambda": number(
        1.0, "the gradient-reversal coefficient (its maximum with grl_schedule: ganin)", 0.0
    ),
    "grl_schedule": one_of(
        "constant",
        "constant | ganin: lambda * (2 / (1 + exp(-10 p)) - 1), p = progress 0..1",
        ("constant", "ganin"),
    ),
    "hidden": number(256, "hidden units of the domain classifier", 1),
}

SELF_SUPERVISED = {
    "enabled": flag(False, "VICReg between two views as an auxiliary loss"),
    "weight": number(0.3, "weight of the auxiliary loss", 0.0),
    "invariance_lambda": number(25.0, "VICReg invariance weight", 0.0),
    "variance_mu": number(25.0, "VICReg variance weight", 0.0),
    "covariance_v": number(1.0, "VICReg covariance weight", 0.0),
    "expander": items(
        [1024, 1024, 1024],
        "MLP widths over the unnormalised descriptor; VICReg reads its output",
        lambda x: is_int(x, 1),
        "a layer width >= 1",
        nonempty=True,
    ),
    "view_augment": Setting(
        [
            {"name": "random_resized_crop", "scale": [0.5, 1.0]},
            {
                "name": "color_jitter",
                "brightness": 0.5,
                "contrast": 0.4,
                "saturation": 0.4,
                "hue": 0.05,
            },
            {"name": "synthetic_night", "p": 0.3},
        ],
        "the second view's augmentations (an augment list)",
        list,
    ),
}

NIGHT = {
    "name": text(
        None,
        "the recall table row of the night queries (letters, digits, _)",
        nullable=True,
        check=lambda v: None if v.replace("_", "").isalnum() else "must be letters, digits and '_'",
    ),
    "rule": one_of(
        "note",
        "note (the name's note field) | brightness (mean grey level) | list (a file)",
        NIGHT_RULES,
    ),
    "max_brightness": number(
        80.0,
        "rule brightness: mean grey level (0-255) below which a query is night",
        0,
        255,
        lo_open=True,
        hi_open=True,
    ),
    "list": text(
        None,
        f"rule list: a file under {NIGHT_LISTS_DIR}/ (one query name or pano id per line)",
        nullable=True,
        check=lambda v: (
            None
            if v.startswith(NIGHT_LISTS_DIR + "/") and ".." not in v
            else f"must be a file under {NIGHT_LISTS_DIR}/ (so DVC tracks it), got {v!r}"
        ),
    ),
}

DATA = {
    "fetch": items(
        ["synth"],
        "datasets to fetch (one fetch@<name> stage each)",
        lambda x: isinstance(x, str),
        "a dataset name",
        nonempty=True,
    ),
    "train": text(
        "synth/train",
        "<city>/ folders, note field = placeID_City (or GSV-Cities Dataframes/ + Images/)",
    ),
    "val": text("synth/val", "database/ + queries/, used to pick the best epoch"),
    "test": mapping(
        {"synth_test": "synth/test"},
        "evaluation sets: one extract@/evaluate@/visualize@ stage each",
    ),
    "night": mapping(
        {}, "per evaluation set: {name, rule: note|list|brightness, max_brightness, list}"
    ),
    "mining": text(
        None, "database/queries training set for train.method triplet_mining", nullable=True
    ),
    "target": text(None, "unlabeled target-domain images for domain_adaptation", nullable=True),
    "extra_train": items(
        [],
        "extra training images joined to places by their note",
        lambda x: isinstance(x, str),
        "a folder",
    ),
}

DATASET = {
    "source": one_of("synthetic", "synthetic | url | path", SOURCES),
    "url": text(
        None,
        "url: http(s) address of a zip / tar archive or a Google Drive share link",
        nullable=True,
    ),
    "sha256": text(None, "url: lowercase hex of the archive; null = not verified", nullable=True),
    "root": text(
        None,
        "url: folder inside the archive that becomes data/raw/<name>; null = auto, . = all",
        nullable=True,
    ),
    "path": text(
        None,
        "path: the folder you have (linked, never copied; copied when converted)",
        nullable=True,
    ),
    "convert": one_of(
        None,
        "null | cambridge_sv: the dataset's own layout, converted to @-named folders with a "
        "fixed split (every file of a download checked against its sha256)",
        CONVERTERS,
        nullable=True,
    ),
}

# plain sections: name -> (settings, cross-check of the merged section or None)
SECTIONS = {
    "synthetic": (SYNTHETIC, None),
    "gt": (GT, None),
    "model": (MODEL, None),
    "train": (TRAIN, _train_check),
    "extract": (EXTRACT, None),
    "eval": (EVAL, None),
    "viz": (VIZ, None),
    "domain_adaptation": (DOMAIN_ADAPTATION, None),
    "self_supervised": (SELF_SUPERVISED, None),
}
