"""Assemble a training run from a validated config: model, method (batches + objective), add-on loss terms,
optimizer and schedule (a :class:`Training`); ``vpr.train.loop.fit`` runs it."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from vpr.config import TRAINING_PARAMS
from vpr.data.datasets import ImageList
from vpr.data.groundtruth import TrainingData, TrainSet
from vpr.data.transforms import eval_transform, train_transform
from vpr.errors import ConfigError, DataWarning
from vpr.eval.prepare import prep_of
from vpr.models.network import build_model, model_spec
from vpr.train.addons import domain_adaptation, vicreg
from vpr.train.context import Context
from vpr.train.methods import METHODS, ignored_choices
from vpr.train.optim import OPTIMIZERS, SCHEDULERS


@dataclass
class Training:
    """Everything one training run needs, built from the config."""

    spec: dict
    model: torch.nn.Module
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    sampler: object
    batches: Callable[[int], object]
    forward_model: torch.nn.Module | None = (
        None  # what the objective calls, if not model (DDP: the wrapper)
    )


def build_training(
    cfg, data: TrainingData | TrainSet, device: str = "cpu", rank: int = 0, world: int = 1
) -> Training:
    """``rank`` / ``world``: this process's share of every global batch under DDP (vpr.train.distributed)."""
    if isinstance(data, TrainSet):
        data = TrainingData(data)
    t, ssl, da = cfg.train, cfg.self_supervised, cfg.domain_adaptation
    _check_combination(t, ssl, da, data, world)
    for line in ignored_choices(t.method, cfg.raw):
        warnings.warn(line, DataWarning)
    torch.manual_seed(cfg.seed)
    spec = model_spec(cfg, t.image_size)
    model = build_model(spec)
    if hasattr(model.aggregator, "init_from_local_features"):
        init_from_training_features(model, data.places, t.image_size, cfg.seed)
    model.to(device)
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    two_views = ssl["enabled"] or t.method == "self_supervised"
    ctx = Context(
        cfg,
        data,
        model,
        device,
        train_transform(cfg.augment, t.image_size, model.mean, model.std),
        train_transform(ssl["view_augment"], t.image_size, model.mean, model.std)
        if two_views
        else None,
        rank,
        world,
    )
    method = METHODS.build(t.method, ctx, settings=cfg.settings("method"), key="train.method")
    objective, batches = method.objective, method.batches
    if ssl["enabled"] and t.method != "self_supervised":
        objective.add_terms([vicreg.VICRegTerm(model.descriptor_dim, ssl)])
    if da["enabled"]:
        objective.add_terms(
            [
                domain_adaptation.DomainAdversarialTerm(
                    model.backbone.out_channels, da, t.epochs * method.steps_per_epoch
                )
            ]
        )
        batches = domain_adaptation.with_target_images(batches, ctx, data.target)
    objective.to(device)
    optimizer = OPTIMIZERS.build(
        cfg.raw["optimizer"],
        _param_groups(model, objective, method, t.head_lr),
        settings=cfg.settings("optimizer"),
    )
    schedule = SCHEDULERS.build(
        cfg.raw["scheduler"],
        optimizer,
        t.epochs,
        method.steps_per_epoch,
        t.warmup_steps,
        settings=cfg.settings("scheduler"),
    )
    return Training(spec, model, objective, optimizer, schedule, method.sampler, batches)


def _check_combination(t, ssl, da, data: TrainingData, world: int) -> None:
    """What only the combination of settings and data can tell, before anything is built."""
    if da["enabled"] and data.target is None:
        raise ConfigError(
            "domain_adaptation.enabled: needs unlabeled target images; set data.target (e.g. "
            "synth/target_night with synthetic.extra_sets: [target_night]) and rerun build_gt"
        )
    if world > 1 and t.places_per_batch % world:
        raise ConfigError(
            f"train.places_per_batch: {t.places_per_batch} places cannot be split evenly over "
            f"{world} processes; use a multiple of {world}"
        )
    if world > 1 and (t.method != "places" or ssl["enabled"] or da["enabled"]):
        raise ConfigError(
            f"train.processes: DDP ({world} processes) trains train.method places without the "
            "self_supervised / domain_adaptation add-ons; set train.processes: 1 for the others"
        )


def _param_groups(model, objective, method, head_lr) -> list[dict]:
    """The network's groups, the method's own (classifier heads), then add-on heads at the optimizer's lr."""
    in_groups = {id(p) for g in method.param_groups for p in g["params"]}
    groups = model_param_groups(model, head_lr) + method.param_groups
    rest = [p for p in objective.parameters() if p.requires_grad and id(p) not in in_groups]
    return groups + ([{"params": rest}] if rest else [])


def model_param_groups(model, head_lr: float | None) -> list[dict]:
    """The network's trainable parameters as optimizer groups: one at the optimizer's lr, or, with ``head_lr``,
    the backbone at the optimizer's lr and the aggregator + projection (the head) at ``head_lr``."""
    trainable = lambda module: [p for p in module.parameters() if p.requires_grad]  # noqa: E731
    if head_lr is None:
        return [{"params": trainable(model)}]
    head = trainable(model.aggregator) + trainable(model.projection)
    return [
        g
        for g in ({"params": trainable(model.backbone)}, {"params": head, "lr": head_lr})
        if g["params"]
    ]


@torch.no_grad()
def init_from_training_features(model, train_set: TrainSet, image_size, seed: int) -> None:
    """Data-driven aggregator initialisation (NetVLAD: k-means of local features of training images)."""
    rng = np.random.default_rng(seed)
    count = min(model.aggregator.init_images, len(train_set.paths))
    paths = train_set.paths[np.sort(rng.choice(len(train_set.paths), count, replace=False))]
    loader = DataLoader(
        ImageList(paths, eval_transform(image_size, model.mean, model.std)), batch_size=32
    )
    model.eval()
    local = []
    for images, _ in loader:
        fmap = model.backbone(images)  # (B, C, h, w)
        vectors = fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1])
        per_image = max(1, min(100, vectors.shape[0] // len(images)))
        keep = rng.choice(
            vectors.shape[0], min(len(vectors), per_image * len(images)), replace=False
        )
        local.append(vectors[keep].numpy())
    model.aggregator.init_from_local_features(np.concatenate(local), seed=seed)
    model.train()


def run_fingerprint(cfg, *gt_dirs) -> str:
    """Hash of the training params and the ground truth: a checkpoint resumes only the run it belongs to."""
    params = {
        k: cfg.raw.get(k) for k in TRAINING_PARAMS if "." not in k
    }  # the extract keys: just below
    params["validation_prep"] = prep_of(
        cfg.extract, cfg.train.image_size
    ).to_dict()  # picks the best epoch
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
