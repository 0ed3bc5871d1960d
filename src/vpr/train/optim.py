"""Optimizers and learning-rate schedules, by name (declared, with their settings, in vpr.config.choices).

Schedules are stepped by the training loop after every optimizer step (``Schedule.step``) and at the end
of every epoch with the validation metric (``Schedule.epoch_end``); epoch-based settings (milestones)
are converted to steps, so an optional linear warm-up (``train.warmup_steps``) composes with any of them.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from vpr.errors import ConfigError
from vpr.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


@OPTIMIZERS.register()
def sgd(params, *, lr: float, momentum: float, weight_decay: float, nesterov: bool):
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


@OPTIMIZERS.register()
def adam(params, *, lr: float, weight_decay: float):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register()
def adamw(params, *, lr: float, weight_decay: float):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register()
def asgd(params, *, lr: float, weight_decay: float, t0: float):
    return torch.optim.ASGD(params, lr=lr, weight_decay=weight_decay, t0=t0)


class Schedule:
    """A learning-rate schedule with optional linear warm-up; see the module docstring."""

    def __init__(self, optimizer, per_step=None, per_epoch=None, warmup_steps: int = 0):
        self.warmup = (
            lr_scheduler.LinearLR(
                optimizer,
                start_factor=1.0 / (warmup_steps + 1),
                end_factor=1.0,
                total_iters=warmup_steps,
            )
            if warmup_steps
            else None
        )
        self.per_step, self.per_epoch = per_step, per_epoch
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.warmup is not None and self.steps <= self.warmup.total_iters:
            self.warmup.step()
        if self.per_step is not None:
            self.per_step.step()

    def epoch_end(self, metric: float) -> None:
        if self.per_epoch is not None:
            self.per_epoch.step(metric)

    def state_dict(self) -> dict:
        return {
            "steps": self.steps,
            **{
                k: getattr(self, k).state_dict()
                for k in ("warmup", "per_step", "per_epoch")
                if getattr(self, k) is not None
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        for k in ("warmup", "per_step", "per_epoch"):
            if getattr(self, k) is not None:
                getattr(self, k).load_state_dict(state[k])


@SCHEDULERS.register()
def none(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int):
    return Schedule(optimizer, warmup_steps=warmup_steps)


@SCHEDULERS.register()
def multistep(
    optimizer,
    epochs: int,
    steps_per_epoch: int,
    warmup_steps: int,
    *,
    milestones: list,
    gamma: float,
):
    per_step = lr_scheduler.MultiStepLR(
        optimizer, [m * steps_per_epoch for m in milestones], gamma=gamma
    )
    return Schedule(optimizer, per_step=per_step, warmup_steps=warmup_steps)


@SCHEDULERS.register()
def cosine(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int):
    total = max(epochs * steps_per_epoch, 1)
    return Schedule(
        optimizer,
        per_step=lr_scheduler.CosineAnnealingLR(optimizer, T_max=total),
        warmup_steps=warmup_steps,
    )


@SCHEDULERS.register()
def onecycle(
    optimizer,
    epochs: int,
    steps_per_epoch: int,
    warmup_steps: int,
    *,
    pct_start: float,
    div_factor: float,
):
    if warmup_steps:
        raise ConfigError(
            "train.warmup_steps: onecycle has its own warm-up (pct_start); set warmup_steps: 0"
        )
    max_lr = [g["lr"] for g in optimizer.param_groups]
    per_step = lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=max(epochs * steps_per_epoch, 1),
        pct_start=pct_start,
        div_factor=div_factor,
    )
    return Schedule(optimizer, per_step=per_step)


@SCHEDULERS.register()
def plateau(
    optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int, *, factor: float, patience: int
):
    per_epoch = lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=factor, patience=patience
    )
    return Schedule(optimizer, per_epoch=per_epoch, warmup_steps=warmup_steps)
