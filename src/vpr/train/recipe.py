"""Assemble a training run from a validated config: model, objective, optimizer, scheduler, batches,
and the validation function. Stage scripts call this; the loop in ``loop.py`` runs it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from vpr.data.datasets import PlaceImages
from vpr.data.groundtruth import EvalSet, TrainSet
from vpr.data.samplers import PlaceBatchSampler
from vpr.data.transforms import train_transform
from vpr.eval.extract import compute_descriptors
from vpr.eval.retrieval import recall_at, search
from vpr.models.network import build_model, model_spec
from vpr.train.losses import LOSSES, MINERS
from vpr.train.loop import MetricObjective
from vpr.train.optim import OPTIMIZERS, SCHEDULERS


@dataclass
class Recipe:
    spec: dict
    model: torch.nn.Module
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    batches: Callable[[int], DataLoader]


def build_recipe(cfg, train_set: TrainSet, device: str = "cpu") -> Recipe:
    t = cfg.train
    # The sampler checks P and K against the places first: cheap, and before the model is built.
    sampler = PlaceBatchSampler(train_set.place_offsets, train_set.place_images, t.places_per_batch,
                                t.images_per_place, seed=cfg.seed, batches_per_epoch=t.batches_per_epoch)
    torch.manual_seed(cfg.seed)
    spec = model_spec(cfg.raw, t.image_size)
    model = build_model(spec).to(device)
    objective = MetricObjective(LOSSES.build(cfg.loss, settings=cfg.settings("loss")),
                                MINERS.build(cfg.miner, settings=cfg.settings("miner"))).to(device)
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimizer = OPTIMIZERS.build(cfg.optimizer, params, settings=cfg.settings("optimizer"))
    scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, t.epochs, settings=cfg.settings("scheduler"))
    dataset = PlaceImages(train_set.paths, train_set.place_of_image, train_transform(cfg.raw.get("augment"),
                                                                                     t.image_size))

    def batches(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        # Augmentation randomness in workers derives from this generator: same seed + epoch, same batches.
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=t.num_workers, generator=generator,
                          pin_memory=device == "cuda")

    return Recipe(spec, model, objective, optimizer, scheduler, batches)


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


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
