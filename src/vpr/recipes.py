"""Reference recipes: the published training setups, each a named, complete set of params values.

    python -m vpr.recipes list                       # the recipes
    python -m vpr.recipes show cosplace              # every value, with the reference file it comes from
    python -m vpr.recipes run cosplace [--data course] [--queue] [--no-pretrained] [--dry-run] [-- <dvc args>]

``run`` is one ``dvc exp run -n <recipe> -S key=value ...``: DVC writes the values into params.yaml, so
params.yaml stays the single truth and ``dvc exp show`` displays them. ``--data course`` adds the course data
profile (GSV-XS / SF-XS / Tokyo-XS); ``--no-pretrained`` switches ImageNet weights off (offline tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass

from vpr import dvc_params

CT, GC, MX, VG, CP = (
    "gmberton/Simple_VPR_codebase",
    "amaralibey/gsv-cities",
    "amaralibey/MixVPR",
    "gmberton/deep-visual-geo-localization-benchmark",
    "gmberton/CosPlace",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    reference: str  # the repository
    what: str
    values: tuple  # (params key, value, reference file: what it says)
    data: dict = None  # data profile -> -S items it needs (e.g. the triplet mining set)
    profile: str = None  # the data profile the recipe is made for (used when --data is not given)


def _training(
    source: str, places: int | None, epochs: int, size, select="R@1", patience=0, amp=True, warmup=0
):
    batches = (
        (
            ("train.places_per_batch", places, f"{source}: batch_size (places)"),
            ("train.images_per_place", 4, f"{source}: img_per_place"),
            ("gt.train_min_images", 4, f"{source}: min_img_per_place"),
        )
        if places
        else ()
    )
    return batches + (
        ("train.epochs", epochs, f"{source}: epochs"),
        ("train.image_size", size, f"{source}: training image size (null = native)"),
        ("train.select_best_by", select, f"{source}: the checkpoint kept"),
        ("train.patience", patience, f"{source}: early stopping (0 = none)"),
        ("train.amp", amp, f"{source}: mixed precision (CUDA only)"),
        ("train.warmup_steps", warmup, f"{source}: linear warm-up steps"),
    )


def _backbone(name: str, cut: str, freeze: int, file: str, cut_note: str, freeze_note: str):
    return (
        ("backbone", name, f"{file}: {name}"),
        (f"backbones.{name}.pretrained", True, f"{file}: ImageNet weights"),
        (f"backbones.{name}.cut_at", cut, f"{file}: {cut_note}"),
        (f"backbones.{name}.freeze", freeze, f"{file}: {freeze_note}"),
    )


def _vg(agg: str, label: str, settings: tuple) -> Recipe:
    """The VG benchmark's triplet recipe with one aggregator."""
    return Recipe(
        f"vg_{agg}",
        VG,
        f"VG benchmark: ResNet-18 conv4 + {label}, triplets with partial mining, Adam",
        _backbone(
            "resnet18",
            "conv4",
            3,
            "model/network.py",
            "resnet18conv4",
            "layers before layer3 frozen",
        )
        + (
            ("aggregator", agg, f"parser.py: --aggregation {agg}"),
            *settings,
            ("train.method", "triplet_mining", "train.py + datasets_ws.py: TripletsDataset"),
            ("methods.triplet_mining.queries_per_epoch", 5000, "parser.py"),
            ("methods.triplet_mining.cache_refresh_rate", 1000, "parser.py"),
            ("methods.triplet_mining.queries_per_batch", 4, "parser.py: train_batch_size"),
            ("methods.triplet_mining.negatives", 10, "parser.py: negs_num_per_query"),
            (
                "methods.triplet_mining.negatives_sample",
                1000,
                "parser.py: neg_samples_num (partial mining)",
            ),
            (
                "methods.triplet_mining.positive_radius_m",
                10.0,
                "parser.py: train_positives_dist_threshold",
            ),
            (
                "methods.triplet_mining.negative_radius_m",
                25.0,
                "parser.py: val_positive_dist_threshold",
            ),
            ("methods.triplet_mining.margin", 0.1, "parser.py"),
            ("optimizer", "adam", "parser.py"),
            ("optimizers.adam.lr", 0.00001, "parser.py"),
            ("optimizers.adam.weight_decay", 0.0, "train.py"),
            ("scheduler", "none", "train.py"),
            ("extract.image_size", [480, 640], "parser.py: --resize"),
            ("extract.resize", "stretch", "test.py: hard_resize"),
        )
        + _training(
            "parser.py, train.py", None, 1000, [480, 640], select="R@5", patience=3, amp=False
        ),
        data={
            "synth": ("data.mining=synth/mining", 'synthetic.extra_sets=["mining"]'),
            "course": ("data.mining=sf_xs/train",),
        },
    )


TUNING = "benchmarks/results/real_photos_tuning.jsonl"


def _real_photos() -> Recipe:
    """The real-photo profile: fine-tuning the offline ImageNet backbone on the Cambridge training area within
    about 15 minutes of 2 CPU cores; each value names what chose it (the tuning runs are in TUNING)."""
    return Recipe(
        "real_photos",
        "this project",
        "real photos on 2 CPU cores: Cambridge street view, EfficientNet-Lite0 "
        "(ImageNet) + GeM fine-tuned at 160 x 160, tested at 320 x 320",
        (
            ("backbone", "efficientnet_lite0", "the one ImageNet backbone available offline"),
            (
                "backbones.efficientnet_lite0.pretrained",
                True,
                "ImageNet weights (the untrained baseline's)",
            ),
            (
                "backbones.efficientnet_lite0.freeze",
                5,
                f"{TUNING}: freeze 3 and 5 alike on validation; 5 trains fewer layers",
            ),
            ("aggregator", "gem", "the reference check's aggregator"),
            ("aggregators.gem.p", 3.0, "GeM p = 3"),
            (
                "gt.train_places",
                "clusters",
                f"{TUNING}: places = positions within 10 m x heading class",
            ),
            ("gt.place_m", 10.0, "about two capture points (median spacing 6 m)"),
            ("gt.train_min_images", 2, "a 10 m place holds 2-7 views of one heading"),
            ("train.images_per_place", 2, "K = 2: most places have 2-3 images"),
            ("train.places_per_batch", 32, "P x K = 64 images per batch"),
            (
                "train.image_size",
                [160, 160],
                "4 x fewer pixels than the test size: fits the CPU budget",
            ),
            ("train.epochs", 10, f"{TUNING}: 10 epochs of the 656 training images"),
            (
                "train.patience",
                0,
                "no early stopping: validation has 68 queries (one query = 1.5 points)",
            ),
            (
                "extract.checkpoint",
                "last",
                "the last epoch: selecting on 68 validation queries picks noise",
            ),
            ("loss", "multisimilarity", "the default loss"),
            ("miner", "multisimilarity", "the default miner"),
            ("optimizer", "adam", "the default optimizer"),
            (
                "optimizers.adam.lr",
                0.0003,
                f"{TUNING}: 3e-4 and 1e-3 best on validation, 1e-4 barely moves",
            ),
            ("scheduler", "multistep", "the default scheduler"),
            ("schedulers.multistep.milestones", [7], "lr x 0.3 for the last 3 epochs"),
            (
                "augment",
                [],
                f"{TUNING}: colour jitter + random resized crop did not help and cost 1.5 x the time",
            ),
            ("extract.image_size", [320, 320], "the reference check's test size"),
            (
                "extract.resize",
                "stretch",
                "the reference check's preparation (the photos are square)",
            ),
        ),
        profile="cambridge",
    )


RECIPES = {
    r.name: r
    for r in (
        Recipe(
            "course_template",
            CT,
            "the course template's baseline: ResNet-18 + avgpool + FC 512, contrastive loss, SGD",
            _backbone(
                "resnet18",
                "conv5",
                0,
                "main.py",
                "whole network (layer4 + avgpool), fc -> Linear(512, 512)",
                "nothing frozen",
            )
            + (
                ("aggregator", "avg", "main.py: torchvision's avgpool"),
                ("model.descriptor_dim", 512, "main.py: fc 512"),
                ("model.normalize", False, "main.py: descriptors not L2-normalised at test time"),
                ("loss", "contrastive", "main.py: ContrastiveLoss"),
                ("losses.contrastive.pos_margin", 0.0, "main.py"),
                ("losses.contrastive.neg_margin", 1.0, "main.py"),
                ("miner", "none", "main.py: no miner"),
                ("optimizer", "sgd", "main.py: torch.optim.SGD"),
                ("optimizers.sgd.lr", 0.001, "main.py"),
                ("optimizers.sgd.weight_decay", 0.001, "main.py"),
                ("optimizers.sgd.momentum", 0.9, "main.py"),
                ("scheduler", "none", "main.py: none"),
                (
                    "augment",
                    [{"name": "randaugment", "num_ops": 3}],
                    "main.py: tfm.RandAugment(num_ops=3)",
                ),
                ("extract.image_size", None, "datasets/test_dataset.py: no resize"),
                (
                    "extract.checkpoint",
                    "best",
                    "main.py keeps the best by val R@1 (an older main.py tested the last: "
                    "extract.checkpoint=last)",
                ),
                ("train.method", "places", "main.py: places x images per batch"),
                ("sampler", "places", "datasets/train_dataset.py"),
            )
            + _training("main.py, parser.py", 64, 20, None),
        ),
        Recipe(
            "gsv_cities",
            GC,
            "GSV-Cities: ResNet-50 + Conv-AP, multi-similarity loss and miner, Adam",
            _backbone(
                "resnet50",
                "conv5",
                3,
                "main.py, models/backbones/resnet.py",
                "layers_to_crop=[]",
                "layers_to_freeze=2: conv1, layer1, layer2 (stages stem, layer1, layer2)",
            )
            + (
                ("aggregator", "convap", "main.py: ConvAP"),
                ("aggregators.convap.out_channels", 1024, "main.py"),
                ("aggregators.convap.s1", 2, "main.py"),
                ("aggregators.convap.s2", 2, "main.py"),
                ("loss", "multisimilarity", "main.py: MultiSimilarityLoss"),
                ("losses.multisimilarity.alpha", 1.0, "utils/losses.py"),
                ("losses.multisimilarity.beta", 50.0, "utils/losses.py"),
                ("losses.multisimilarity.base", 0.0, "utils/losses.py"),
                ("miner", "multisimilarity", "main.py: MultiSimilarityMiner"),
                ("miners.multisimilarity.epsilon", 0.1, "main.py: miner_margin"),
                ("optimizer", "adam", "main.py"),
                ("optimizers.adam.lr", 0.0002, "main.py"),
                ("optimizers.adam.weight_decay", 0.0, "main.py"),
                ("scheduler", "multistep", "main.py: MultiStepLR"),
                ("schedulers.multistep.milestones", [5, 10, 15, 25], "main.py"),
                ("schedulers.multistep.gamma", 0.3, "main.py: lr_mult"),
                ("sampler", "places", "dataloaders/train/GSVCitiesDataset.py"),
                ("samplers.places.city_batches", True, "main.py: shuffle_all=False"),
                (
                    "augment",
                    [{"name": "randaugment", "num_ops": 3}],
                    "dataloaders/GSVCitiesDataloader.py",
                ),
                (
                    "extract.image_size",
                    [320, 320],
                    "dataloaders/GSVCitiesDataloader.py: valid_transform",
                ),
                (
                    "extract.resize",
                    "stretch",
                    "dataloaders/GSVCitiesDataloader.py: T.Resize((320, 320))",
                ),
            )
            + _training("main.py", 100, 30, [320, 320], warmup=600),
        ),
        Recipe(
            "mixvpr",
            MX,
            "MixVPR: ResNet-50 cut at conv4 + MixVPR 4096-D, multi-similarity, SGD",
            _backbone(
                "resnet50",
                "conv4",
                3,
                "main.py, models/backbones/resnet.py",
                "layers_to_crop=[4]",
                "layers_to_freeze=2: conv1, layer1, layer2",
            )
            + (
                ("aggregator", "mixvpr", "main.py: MixVPR"),
                ("aggregators.mixvpr.mix_depth", 4, "main.py"),
                ("aggregators.mixvpr.mlp_ratio", 1.0, "main.py"),
                ("aggregators.mixvpr.out_channels", 1024, "main.py"),
                ("aggregators.mixvpr.out_rows", 4, "main.py"),
                ("loss", "multisimilarity", "main.py"),
                ("miner", "multisimilarity", "main.py"),
                ("miners.multisimilarity.epsilon", 0.1, "main.py: miner_margin"),
                ("optimizer", "sgd", "main.py"),
                ("optimizers.sgd.lr", 0.05, "main.py"),
                ("optimizers.sgd.weight_decay", 0.001, "main.py"),
                ("optimizers.sgd.momentum", 0.9, "main.py"),
                ("scheduler", "multistep", "main.py"),
                ("schedulers.multistep.milestones", [5, 10, 15, 25, 45], "main.py"),
                ("schedulers.multistep.gamma", 0.3, "main.py: lr_mult"),
                ("samplers.places.city_batches", True, "main.py: shuffle_all=False"),
                (
                    "augment",
                    [{"name": "randaugment", "num_ops": 3}],
                    "dataloaders/GSVCitiesDataloader.py",
                ),
                ("extract.image_size", [320, 320], "dataloaders/GSVCitiesDataloader.py"),
                ("extract.resize", "stretch", "dataloaders/GSVCitiesDataloader.py: T.Resize"),
            )
            + _training("main.py", 120, 80, [320, 320], warmup=650),
        ),
        _vg(
            "netvlad",
            "NetVLAD (64 clusters)",
            (("aggregators.netvlad.clusters", 64, "parser.py: netvlad_clusters"),),
        ),
        _vg(
            "gem",
            "GeM",
            (
                ("aggregators.gem.p", 3.0, "model/aggregation.py"),
                ("aggregators.gem.l2", "before_pool", "parser.py: --l2 before_pool"),
            ),
        ),
        Recipe(
            "cosplace",
            CP,
            "CosPlace: ResNet-18 + GeM + FC 512, CosFace over UTM x heading classes, Adam",
            _backbone(
                "resnet18",
                "conv5",
                3,
                "cosplace_model/cosplace_network.py",
                "avgpool and fc removed",
                "layers before layer3 frozen (train_all_layers off)",
            )
            + (
                ("aggregator", "cosplace", "cosplace_model/cosplace_network.py: L2, GeM, FC, L2"),
                ("aggregators.cosplace.fc_output_dim", 512, "parser.py"),
                ("train.method", "cosplace", "train.py"),
                ("methods.cosplace.M", 10.0, "parser.py"),
                ("methods.cosplace.alpha", 30.0, "parser.py"),
                ("methods.cosplace.N", 5, "parser.py"),
                ("methods.cosplace.L", 2, "parser.py"),
                ("methods.cosplace.groups_num", 8, "parser.py"),
                ("methods.cosplace.min_images_per_class", 10, "parser.py"),
                ("methods.cosplace.batch_size", 32, "parser.py"),
                ("methods.cosplace.margin", 0.4, "cosface_loss.py"),
                ("methods.cosplace.scale", 30.0, "cosface_loss.py"),
                ("methods.cosplace.classifiers_lr", 0.01, "parser.py"),
                ("train.batches_per_epoch", 10000, "parser.py: iterations_per_epoch"),
                ("optimizer", "adam", "train.py"),
                ("optimizers.adam.lr", 0.00001, "parser.py"),
                ("optimizers.adam.weight_decay", 0.0, "train.py"),
                ("scheduler", "none", "train.py"),
                (
                    "augment",
                    [
                        {
                            "name": "color_jitter",
                            "brightness": 0.7,
                            "contrast": 0.7,
                            "saturation": 0.7,
                            "hue": 0.5,
                        },
                        {
                            "name": "random_resized_crop",
                            "scale": [0.5, 1.0],
                            "ratio": [0.75, 1.3333],
                        },
                    ],
                    "train.py + augmentations.py: DeviceAgnosticColorJitter, DeviceAgnosticRandomResizedCrop",
                ),
                ("extract.image_size", None, "parser.py: resize_test_imgs off (native size)"),
            )
            + _training("parser.py, train.py", None, 50, [512, 512], amp=False),
        ),
        _real_photos(),
    )
}


def overrides(name: str, data: str | None = None, pretrained: bool = True) -> list[str]:
    """The ``-S key=value`` arguments of one recipe, in the grammar DVC parses."""
    recipe = RECIPES[name]
    args = [
        f"{k}={dvc_params.hydra_value(False if k.endswith('.pretrained') and not pretrained else v)}"
        for k, v, _ in recipe.values
    ]
    profile = data or recipe.profile
    needs = list((recipe.data or {}).get(profile or "synth", ()))
    if profile:
        # Once data=${data_profiles.X} is set, Hydra cannot set a key inside it: the keys the recipe needs
        # are set in the profile itself, before the profile is copied into data.
        needs = [f"data_profiles.{profile}.{i[5:]}" if i.startswith("data.") else i for i in needs]
        first = [i for i in needs if i.startswith("data_profiles.")]
        needs = (
            first + ["data=${data_profiles.%s}" % profile] + [i for i in needs if i not in first]
        )
    return needs + args


def apply(params: dict, name: str, pretrained: bool = True) -> dict:
    """params.yaml (a dict) with the recipe's values written in, as `dvc exp run -S` would write them
    (on the data section params.yaml has)."""
    import copy

    out = copy.deepcopy(params)
    extra = [
        (k, dvc_params.load(v))
        for k, v in (item.split("=", 1) for item in (RECIPES[name].data or {}).get("synth", ()))
    ]
    for key, value, *_ in list(RECIPES[name].values) + extra:
        if key.endswith(".pretrained") and not pretrained:
            value = False
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return out


def table(name: str) -> str:
    """Markdown: every value of a recipe with the reference file it comes from."""
    recipe = RECIPES[name]
    rows = [f"| `{k}` | `{json.dumps(v)}` | {src} |" for k, v, src in recipe.values]
    where = (
        f"[{recipe.reference}](https://github.com/{recipe.reference})"
        if "/" in recipe.reference
        else recipe.reference
    )
    return (
        f"**`{name}`** — {recipe.what} ({where})\n\n"
        "| param | value | reference file |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpr.recipes", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the recipes")
    sub.add_parser("show", help="a recipe's values and sources").add_argument(
        "name", choices=sorted(RECIPES)
    )
    run = sub.add_parser("run", help="dvc exp run -n <recipe> -S ... (the rest is passed to dvc)")
    run.add_argument("name", choices=sorted(RECIPES))
    run.add_argument("--data", help="a data profile of params.yaml, e.g. course")
    run.add_argument("--no-pretrained", action="store_true", help="no ImageNet weights (offline)")
    run.add_argument(
        "--queue", action="store_true", help="queue the experiment (dvc queue start runs it)"
    )
    run.add_argument("--dry-run", action="store_true", help="print the dvc command, do not run it")
    argv = sys.argv[1:] if argv is None else list(argv)
    dvc_args = (
        argv[argv.index("--") + 1 :] if "--" in argv else []
    )  # after --: more arguments for dvc exp run
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.command == "list":
        for r in RECIPES.values():
            print(f"{r.name:16} {r.what} ({r.reference})")
        return 0
    if args.command == "show":
        print(table(args.name))
        return 0
    cmd = ["dvc", "exp", "run", "-n", args.name] + (["--queue"] if args.queue else [])
    for item in overrides(args.name, args.data, not args.no_pretrained):
        cmd += ["-S", item]
    cmd += dvc_args
    print(" ".join(f"'{c}'" if any(ch in c for ch in " ${}[]") else c for c in cmd), flush=True)
    return 0 if args.dry_run else subprocess.call([sys.executable, "-m", *cmd])


if __name__ == "__main__":
    sys.exit(main())
