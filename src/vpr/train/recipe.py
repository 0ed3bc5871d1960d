"""Assemble a training run from a validated config: model, method (batches + objective), add-on loss terms,
optimizer, schedule, and the validation function. Stage scripts call this; ``loop.fit`` runs it."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from vpr.data.datasets import ImageList
from vpr.data.groundtruth import EvalSet, TrainingData, TrainSet
from vpr.data.transforms import eval_transform, train_transform
from vpr.eval.extract import compute_descriptors
from vpr.eval.retrieval import recall_at, search
from vpr.models.network import build_model, model_spec
from vpr.train import domain_adaptation, self_supervised
from vpr.train.methods import METHODS, Context
from vpr.train.optim import OPTIMIZERS, SCHEDULERS

# The params sections that change what training produces (and so must match to resume a run).
TRAINING_PARAMS = ("seed", "backbone", "aggregator", "loss", "miner", "optimizer", "scheduler", "sampler", "model",
                   "backbones", "aggregators", "losses", "miners", "optimizers", "schedulers", "samplers", "augment",
                   "train", "methods", "domain_adaptation", "self_supervised")


@dataclass
class Recipe:
    spec: dict
    model: torch.nn.Module
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    sampler: object
    batches: Callable[[int], object]


def build_recipe(cfg, data: TrainingData | TrainSet, device: str = "cpu", rank: int = 0, world: int = 1) -> Recipe:
    """``rank`` / ``world``: this process's share of every global batch under DDP (vpr.train.distributed)."""
    if isinstance(data, TrainSet):
        data = TrainingData(data)
    t = cfg.train
    ssl = self_supervised.check_settings(cfg.raw.get("self_supervised"))
    da = domain_adaptation.check_settings(cfg.raw.get("domain_adaptation"))
    if da["enabled"] and data.target is None:
        from vpr.errors import ConfigError
        raise ConfigError("domain_adaptation.enabled: needs unlabeled target images; set data.target (e.g. "
                          "synth/target_night with synthetic.extra_sets: [target_night]) and rerun build_gt")
    import warnings

    from vpr.errors import DataWarning
    from vpr.train.methods import ignored_choices
    for line in ignored_choices(t.method, cfg.raw):
        warnings.warn(line, DataWarning)
    torch.manual_seed(cfg.seed)
    spec = model_spec(cfg.raw, t.image_size)
    model = build_model(spec)
    if hasattr(model.aggregator, "init_from_local_features"):
        init_from_training_features(model, data.places, t.image_size, cfg.seed)
    model.to(device)
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    two_views = ssl["enabled"] or t.method == "self_supervised"
    if world > 1 and (t.method != "places" or two_views or da["enabled"]):
        from vpr.errors import ConfigError
        raise ConfigError(f"train.processes: DDP ({world} processes) trains train.method places without the "
                          "self_supervised / domain_adaptation add-ons; set train.processes: 1 for the others")
    ctx = Context(cfg, data, model, device, train_transform(cfg.raw.get("augment"), t.image_size, model.mean, model.std),
                  train_transform(ssl["view_augment"], t.image_size, model.mean, model.std) if two_views else None,
                  rank, world)
    method = METHODS.build(t.method, ctx, settings=(cfg.raw.get("methods") or {}).get(t.method), key="train.method")
    objective, batches = method.objective, method.batches
    if ssl["enabled"] and t.method != "self_supervised":
        objective.add_terms([self_supervised.VICRegTerm(model.descriptor_dim, ssl)])
    if da["enabled"]:
        objective.add_terms([domain_adaptation.DomainAdversarialTerm(model.backbone.out_channels, da,
                                                                     t.epochs * method.steps_per_epoch)])
        batches = domain_adaptation.with_target_images(batches, ctx, data.target)
    objective.to(device)

    in_groups = {id(p) for g in method.param_groups for p in g["params"]}
    groups = model_param_groups(model, t.head_lr) + method.param_groups
    rest = [p for p in objective.parameters() if p.requires_grad and id(p) not in in_groups]
    if rest:   # add-on heads (domain classifier, GPM proxy head) learn at the optimizer's rate
        groups.append({"params": rest})
    optimizer = OPTIMIZERS.build(cfg.optimizer, groups, settings=cfg.settings("optimizer"))
    schedule = SCHEDULERS.build(cfg.scheduler, optimizer, t.epochs, method.steps_per_epoch, t.warmup_steps,
                                settings=cfg.settings("scheduler"))
    return Recipe(spec, model, objective, optimizer, schedule, method.sampler, batches)


def model_param_groups(model, head_lr: float | None) -> list[dict]:
    """The network's trainable parameters as optimizer groups: one at the optimizer's lr, or, with ``head_lr``,
    the backbone at the optimizer's lr and the aggregator + projection (the head) at ``head_lr``."""
    trainable = lambda module: [p for p in module.parameters() if p.requires_grad]   # noqa: E731
    if head_lr is None:
        return [{"params": trainable(model)}]
    head = trainable(model.aggregator) + trainable(model.projection)
    return [g for g in ({"params": trainable(model.backbone)}, {"params": head, "lr": head_lr}) if g["params"]]


@torch.no_grad()
def init_from_training_features(model, train_set: TrainSet, image_size, seed: int) -> None:
    """Data-driven aggregator initialisation (NetVLAD: k-means of local features of training images)."""
    rng = np.random.default_rng(seed)
    count = min(model.aggregator.init_images, len(train_set.paths))
    paths = train_set.paths[np.sort(rng.choice(len(train_set.paths), count, replace=False))]
    loader = DataLoader(ImageList(paths, eval_transform(image_size, model.mean, model.std)), batch_size=32)
    model.eval()
    local = []
    for images, _ in loader:
        fmap = model.backbone(images)                         # (B, C, h, w)
        vectors = fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1])
        per_image = max(1, min(100, vectors.shape[0] // len(images)))
        keep = rng.choice(vectors.shape[0], min(len(vectors), per_image * len(images)), replace=False)
        local.append(vectors[keep].numpy())
    model.aggregator.init_from_local_features(np.concatenate(local), seed=seed)
    model.train()


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


def fingerprint(cfg, *gt_dirs) -> str:
    """Hash of the training params and the ground truth: a checkpoint resumes only the run it belongs to."""
    params = {k: cfg.raw.get(k) for k in TRAINING_PARAMS}
    params["validation_prep"] = cfg.extract.prep(cfg.train.image_size).to_dict()   # picks the best epoch
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for d in gt_dirs:
        for root, _, files in sorted(os.walk(d)):
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as fh:
                    h.update(name.encode() + fh.read())
    return h.hexdigest()


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
