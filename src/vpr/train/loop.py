"""The one training loop. Training methods plug in as an *objective* (descriptors, labels -> loss)
and a *batch provider* (epoch -> iterable of (images, labels)); the loop owns epochs, validation,
best/last checkpoints, early stopping and divergence checks.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from vpr.errors import TrainingError
from vpr.train.checkpoint import save_checkpoint


class MetricObjective(nn.Module):
    """A pytorch-metric-learning loss on place labels, optionally fed by a miner."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None):
        super().__init__()
        self.loss, self.miner = loss, miner

    def forward(self, descriptors, labels):
        tuples = self.miner(descriptors, labels) if self.miner is not None else None
        return self.loss(descriptors, labels, tuples)


@dataclass
class LoopConfig:
    epochs: int
    checkpoint_dir: str
    select_best_by: str = "R@1"     # validation metric that picks best.pt
    patience: int = 0               # stop after this many epochs without improvement (0 = never)
    device: str = "cpu"


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list = field(default_factory=list)


def _lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def fit(model: nn.Module, objective: nn.Module, optimizer, scheduler,
        batches: Callable[[int], Iterable], validate: Callable[[nn.Module], dict], cfg: LoopConfig,
        checkpoint_meta: dict, on_epoch_end: Callable[[dict], None] | None = None) -> FitResult:
    """Train for ``cfg.epochs`` epochs (0 = only evaluate the initial model).

    Epoch 0 is the initial model's validation, so ``best.pt`` always exists and training that never
    beats the starting point says so. After every epoch: validate, write ``last.pt``, and ``best.pt``
    if ``select_best_by`` improved.
    """
    best_path = os.path.join(cfg.checkpoint_dir, "best.pt")
    last_path = os.path.join(cfg.checkpoint_dir, "last.pt")
    history: list[dict] = []
    best_score, best_epoch, bad_epochs, stopped_early = -math.inf, 0, 0, False

    def save(path, epoch, metrics):
        save_checkpoint(path, model=model.state_dict(), objective=objective.state_dict(),
                        optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict() if scheduler is not None else None,
                        epoch=epoch, metrics=metrics, **checkpoint_meta)

    def end_epoch(epoch, loss, seconds, lr):
        nonlocal best_score, best_epoch, bad_epochs
        metrics = validate(model)
        if cfg.select_best_by not in metrics:
            raise TrainingError(f"train.select_best_by: validation gives {sorted(metrics)}, "
                                f"not '{cfg.select_best_by}'")
        row = dict(epoch=epoch, loss=loss, lr=lr, seconds=seconds,
                   **{f"val_{k}": v for k, v in metrics.items()})
        history.append(row)
        improved = metrics[cfg.select_best_by] > best_score
        if improved:
            best_score, best_epoch, bad_epochs = metrics[cfg.select_best_by], epoch, 0
            save(best_path, epoch, metrics)
        else:
            bad_epochs += 1
        save(last_path, epoch, metrics)
        if on_epoch_end:
            on_epoch_end(row)
        return improved

    end_epoch(0, float("nan"), 0.0, _lr(optimizer))
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        start, lr = time.time(), _lr(optimizer)
        model.train()
        total, steps = 0.0, 0
        bar = tqdm(batches(epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False)
        for images, labels in bar:
            descriptors = model(images.to(cfg.device))
            loss = objective(descriptors, labels.to(cfg.device))
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at epoch {epoch}, step {steps + 1}; "
                                    f"the last good checkpoint is kept in {last_path}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
        if scheduler is not None:
            scheduler.step()
        end_epoch(epoch, total / max(steps, 1), time.time() - start, lr)
        if cfg.patience and bad_epochs >= cfg.patience:
            stopped_early = True
            break
    return FitResult(best_epoch, best_score, epoch, stopped_early, history)
