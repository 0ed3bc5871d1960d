"""Assemble a training run from a validated config: sampler, model, objective, optimizer, schedule, batches,
and the validation function. Stage scripts call this; the loop in ``loop.py`` runs it."""
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
from vpr.data.groundtruth import EvalSet, TrainSet
from vpr.data.loading import PlaceBatches
from vpr.data.samplers import SAMPLERS
from vpr.data.transforms import eval_transform
from vpr.eval.extract import compute_descriptors
from vpr.eval.retrieval import recall_at, search
from vpr.models.network import build_model, model_spec
from vpr.train.losses import LOSSES, MINERS
from vpr.train.loop import MetricObjective
from vpr.train.optim import OPTIMIZERS, SCHEDULERS

# The params sections that change what training produces (and so must match to resume a run).
TRAINING_PARAMS = ("seed", "backbone", "aggregator", "loss", "miner", "optimizer", "scheduler", "sampler", "model",
                   "backbones", "aggregators", "losses", "miners", "optimizers", "schedulers", "samplers", "augment",
                   "train")


@dataclass
class Recipe:
    spec: dict
    model: torch.nn.Module
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    sampler: object
    batches: Callable[[int], object]


def build_recipe(cfg, train_set: TrainSet, device: str = "cpu", rank: int = 0, world: int = 1) -> Recipe:
    """``rank`` / ``world``: this process's share of every global batch under DDP (vpr.train.distributed)."""
    t = cfg.train
    # The sampler checks P and K against the places first: cheap, and before the model is built.
    sampler = SAMPLERS.build(cfg.sampler, train_set, t.places_per_batch, t.images_per_place, cfg.seed,
                             t.batches_per_epoch, settings=cfg.settings("sampler"))
    torch.manual_seed(cfg.seed)
    spec = model_spec(cfg.raw, t.image_size)
    model = build_model(spec)
    if hasattr(model.aggregator, "init_from_local_features"):
        init_from_training_features(model, train_set, t.image_size, cfg.seed)
    model.to(device)
    if t.channels_last and torch.device(device).type == "cuda":
        model.to(memory_format=torch.channels_last)
    loss = LOSSES.build(cfg.loss, train_set.num_places, model.descriptor_dim, settings=cfg.settings("loss"))
    terms = sampler.objective_terms(model.descriptor_dim) if hasattr(sampler, "objective_terms") else []
    objective = MetricObjective(loss, MINERS.build(cfg.miner, settings=cfg.settings("miner")), terms).to(device)

    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    loss_params = [p for p in objective.loss.parameters() if p.requires_grad]
    if loss_params:   # class centres / proxies learn at their own rate
        groups.append({"params": loss_params, "lr": objective.loss.weights_lr})
    term_params = [p for p in objective.terms.parameters() if p.requires_grad]
    if term_params:
        groups.append({"params": term_params})
    optimizer = OPTIMIZERS.build(cfg.optimizer, groups, settings=cfg.settings("optimizer"))
    schedule = SCHEDULERS.build(cfg.scheduler, optimizer, t.epochs, len(sampler), t.warmup_steps,
                                settings=cfg.settings("scheduler"))
    # Decoding in persistent workers, uint8 hand-over, normalisation (and optionally augmentation) on the
    # device; augmentation seeded per image from (seed, epoch, batch, position): see vpr.data.loading.
    batches = PlaceBatches(train_set, sampler, cfg.raw.get("augment"), t.image_size, model.mean, model.std,
                           seed=cfg.seed, device=device, num_workers=t.num_workers, augment_on=t.augment_on,
                           channels_last=t.channels_last, rank=rank, world=world)

    return Recipe(spec, model, objective, optimizer, schedule, sampler, batches)


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


def evaluate_model(model, eval_set: EvalSet, image_size, ns=(1, 5, 10, 20), batch_size: int = 64,
                   num_workers: int = 0, device: str = "cpu") -> dict:
    """Recall@N (percent) of ``model`` on ``eval_set``: keys 'R@1', 'R@5', ..."""
    database = compute_descriptors(model, eval_set.database_paths, image_size, batch_size, num_workers, device,
                                   desc="val database")
    queries = compute_descriptors(model, eval_set.queries_paths, image_size, batch_size, num_workers, device,
                                  desc="val queries")
    predictions = search(database, queries, max(ns))
    recalls = recall_at(predictions, eval_set.positives, eval_set.num_database, ns)
    return {f"R@{n}": r for n, r in recalls.items()}


def fingerprint(cfg, *gt_dirs) -> str:
    """Hash of the training params and the ground truth: a checkpoint resumes only the run it belongs to."""
    h = hashlib.sha256(json.dumps({k: cfg.raw.get(k) for k in TRAINING_PARAMS}, sort_keys=True,
                                  default=str).encode())
    for d in gt_dirs:
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as fh:
                h.update(name.encode() + fh.read())
    return h.hexdigest()


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
