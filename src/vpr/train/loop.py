"""The one training loop.

Training methods plug in as an *objective* (``objective(model, batch) -> (loss, logs)``) and a *batch
provider* (``batches(epoch)`` -> iterable of dict batches); extra loss terms attach to the objective. The
loop owns epochs, validation, best/last checkpoints, early stopping, divergence checks, the learning-rate
schedule and resumption: ``last.pt`` holds everything needed to continue (model, objective, optimizer,
schedule, sampler state, epoch, history), and every epoch reseeds the random generators from
``(seed, epoch)``, so a run resumed after a kill ends with the metrics of an uninterrupted one.
"""
from __future__ import annotations

import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vpr.errors import TrainingError
from vpr.train.checkpoint import save_checkpoint


class Objective(nn.Module):
    """Base of the training objectives: ``main_loss(model, batch, out)`` plus extra loss terms.

    ``out`` holds what the model computed on ``batch["images"]`` (``descriptors`` and the backbone
    ``features``); each term is ``term(model, batch, out) -> (loss, logs)`` and is added to the total.
    Terms are how add-ons plug in (GPM's proxy head, domain adaptation, the self-supervised loss)."""

    name = "loss"

    def __init__(self, terms: Iterable[nn.Module] = ()):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def main_loss(self, model, batch, out):
        raise NotImplementedError

    def forward(self, model, batch):
        descriptors, features = model(batch["images"], return_features=True)
        out = {"descriptors": descriptors, "features": features}
        loss = self.main_loss(model, batch, out)
        logs = {self.name: loss.item()}
        for term in self.terms:
            extra, term_logs = term(model, batch, out)
            loss = loss + extra
            logs.update(term_logs)
        return loss, logs

    def add_terms(self, terms) -> None:
        for term in terms:
            self.terms.append(term)


class MetricObjective(Objective):
    """A pytorch-metric-learning loss on place labels, optionally fed by a miner (the ``places`` method)."""

    name = "metric_loss"

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None, terms: Iterable[nn.Module] = ()):
        super().__init__(terms)
        self.loss, self.miner = loss, miner

    def main_loss(self, model, batch, out):
        descriptors, labels = out["descriptors"], batch["labels"]
        tuples = self.miner(descriptors, labels) if self.miner is not None else None
        return self.loss(descriptors, labels, tuples)


@dataclass
class LoopConfig:
    epochs: int
    checkpoint_dir: str
    select_best_by: str = "R@1"     # validation metric that picks best.pt
    patience: int = 0               # stop after this many epochs without improvement (0 = never)
    device: str = "cpu"
    seed: int = 0
    amp: bool = False               # mixed precision (CUDA only; a no-op on CPU)
    rank: int = 0                   # DDP: only rank 0 writes checkpoints (vpr.train.distributed)


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None = None
    history: list = field(default_factory=list)


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed python, numpy and torch from (seed, epoch): randomness of an epoch does not depend on the past."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def _lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def fit(model: nn.Module, objective: nn.Module, optimizer, schedule,
        batches: Callable[[int], Iterable[dict]], validate: Callable[[nn.Module], dict], cfg: LoopConfig,
        checkpoint_meta: dict, on_epoch_end: Callable[[dict], None] | None = None, sampler=None,
        resume: dict | None = None, train_model: nn.Module | None = None) -> FitResult:
    """Train for ``cfg.epochs`` epochs (0 = only evaluate the initial model).

    Epoch 0 is the initial model's validation, so ``best.pt`` always exists and training that never beats
    the starting point says so. ``resume``: a ``last.pt`` checkpoint to continue from. ``train_model``: what
    the objective calls, if not ``model`` itself (DDP: ``model`` wrapped by vpr.train.distributed.wrap).
    """
    best_path = os.path.join(cfg.checkpoint_dir, "best.pt")
    last_path = os.path.join(cfg.checkpoint_dir, "last.pt")
    use_amp = cfg.amp and cfg.device == "cuda"
    if cfg.amp and not use_amp:
        warnings.warn("train.amp: mixed precision is a no-op on CPU; training in float32")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = dict(best_score=-math.inf, best_epoch=0, bad_epochs=0, stopped_early=False, history=[])

    def snapshot(epoch, metrics):
        return dict(model=model.state_dict(), objective=objective.state_dict(), optimizer=optimizer.state_dict(),
                    schedule=schedule.state_dict() if schedule is not None else None,
                    sampler=sampler.state_dict() if hasattr(sampler, "state_dict") else None,
                    scaler=scaler.state_dict(), epoch=epoch, metrics=metrics, loop=dict(state),
                    finished=state["stopped_early"] or epoch >= cfg.epochs, **checkpoint_meta)

    def end_epoch(epoch, loss, seconds, lr, logs):
        metrics = validate(model)
        if cfg.select_best_by not in metrics:
            raise TrainingError(f"train.select_best_by: validation gives {sorted(metrics)}, "
                                f"not '{cfg.select_best_by}'")
        row = dict(epoch=epoch, loss=loss, lr=lr, seconds=seconds, **logs,
                   **{f"val_{k}": v for k, v in metrics.items()})
        state["history"] = state["history"] + [row]
        if metrics[cfg.select_best_by] > state["best_score"]:
            state.update(best_score=metrics[cfg.select_best_by], best_epoch=epoch, bad_epochs=0)
            improved = True
        else:
            state["bad_epochs"] += 1
            improved = False
        if epoch > 0 and schedule is not None:
            schedule.epoch_end(metrics[cfg.select_best_by])
        state["stopped_early"] = bool(epoch > 0 and cfg.patience and state["bad_epochs"] >= cfg.patience)
        content = snapshot(epoch, metrics)
        if improved and cfg.rank == 0:
            save_checkpoint(best_path, **content)
        if cfg.rank == 0:
            save_checkpoint(last_path, **content)   # after best.pt: a kill in between loses nothing
        if on_epoch_end:
            on_epoch_end(row)

    start_epoch = 1
    resumed_from = None
    if resume is not None:
        model.load_state_dict(resume["model"])
        objective.load_state_dict(resume["objective"])
        optimizer.load_state_dict(resume["optimizer"])
        if schedule is not None and resume.get("schedule") is not None:
            schedule.load_state_dict(resume["schedule"])
        if hasattr(sampler, "load_state_dict") and resume.get("sampler") is not None:
            sampler.load_state_dict(resume["sampler"])
        scaler.load_state_dict(resume["scaler"])
        state.update(resume["loop"])
        start_epoch = resumed_from = resume["epoch"] + 1
    else:
        seed_epoch(cfg.seed, 0)
        end_epoch(0, float("nan"), 0.0, _lr(optimizer), {})

    for epoch in range(start_epoch, cfg.epochs + 1):
        if state["stopped_early"]:
            break
        seed_epoch(cfg.seed, epoch)
        start, lr = time.time(), _lr(optimizer)
        model.train()
        objective.train()
        total, steps, term_totals = 0.0, 0, {}
        bar = tqdm(batches(epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                   **({"disable": True} if cfg.rank else {}))
        for batch in bar:
            batch = {k: v.to(cfg.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                loss, logs = objective(model if train_model is None else train_model, batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at epoch {epoch}, step {steps + 1}; the last good "
                                    f"checkpoint is kept in {last_path}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if schedule is not None:
                schedule.step()
            total += loss.item()
            steps += 1
            for k, v in logs.items():
                term_totals[k] = term_totals.get(k, 0.0) + v
            bar.set_postfix(loss=f"{total / steps:.4f}")
        term_means = {k: v / max(steps, 1) for k, v in term_totals.items() if len(term_totals) > 1}
        end_epoch(epoch, total / max(steps, 1), time.time() - start, lr, term_means)
    return FitResult(state["best_epoch"], state["best_score"], state["history"][-1]["epoch"], state["stopped_early"],
                     resumed_from, state["history"])
