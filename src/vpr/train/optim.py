"""Optimizers and learning-rate schedules, by name.

Schedules are stepped by the training loop after every optimizer step (``Schedule.step``) and at the end
of every epoch with the validation metric (``Schedule.epoch_end``); epoch-based settings (milestones)
are converted to steps, so an optional linear warm-up (``train.warmup_steps``) composes with any of them.
"""
from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from vpr.errors import ConfigError
from vpr.registry import Registry, require

OPTIMIZERS = Registry("optimizer", "optimizers")
SCHEDULERS = Registry("scheduler", "schedulers")


def _check_lr(name: str, lr: float, weight_decay: float) -> None:
    require(lr > 0, f"optimizers.{name}.lr", f"must be > 0, got {lr}")
    require(weight_decay >= 0, f"optimizers.{name}.weight_decay", f"must be >= 0, got {weight_decay}")


@OPTIMIZERS.register()
def sgd(params, *, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 1e-3, nesterov: bool = False):
    """SGD with momentum (the course template: lr 1e-3, wd 1e-3, momentum 0.9)."""
    _check_lr("sgd", lr, weight_decay)
    require(0 <= momentum < 1, "optimizers.sgd.momentum", f"must be in [0, 1), got {momentum}")
    require(not nesterov or momentum > 0, "optimizers.sgd.nesterov", "needs momentum > 0")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


@OPTIMIZERS.register(paper="Kingma & Ba, Adam, ICLR 2015")
def adam(params, *, lr: float = 1e-4, weight_decay: float = 0.0):
    """Adam."""
    _check_lr("adam", lr, weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register(paper="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019")
def adamw(params, *, lr: float = 1e-4, weight_decay: float = 1e-2):
    """AdamW (decoupled weight decay)."""
    _check_lr("adamw", lr, weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register(paper="Polyak & Juditsky, Acceleration of Stochastic Approximation by Averaging, 1992")
def asgd(params, *, lr: float = 1e-2, weight_decay: float = 0.0, t0: float = 1e6):
    """Averaged SGD."""
    _check_lr("asgd", lr, weight_decay)
    return torch.optim.ASGD(params, lr=lr, weight_decay=weight_decay, t0=t0)


class Schedule:
    """A learning-rate schedule with optional linear warm-up; see the module docstring."""

    def __init__(self, optimizer, per_step=None, per_epoch=None, warmup_steps: int = 0):
        self.warmup = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0,
                                            total_iters=warmup_steps) if warmup_steps else None
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
        return {"steps": self.steps, **{k: getattr(self, k).state_dict() for k in ("warmup", "per_step", "per_epoch")
                                        if getattr(self, k) is not None}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        for k in ("warmup", "per_step", "per_epoch"):
            if getattr(self, k) is not None:
                getattr(self, k).load_state_dict(state[k])


@SCHEDULERS.register()
def none(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int):
    """Constant learning rate (after the optional warm-up)."""
    return Schedule(optimizer, warmup_steps=warmup_steps)


@SCHEDULERS.register()
def multistep(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int, *, milestones: list = (5, 10, 15),
              gamma: float = 0.3):
    """Multiply the lr by gamma after each milestone epoch (GSV-Cities: [5, 10, 15, 25], gamma 0.3)."""
    require(all(isinstance(m, int) and m > 0 for m in milestones) and list(milestones) == sorted(milestones),
            "schedulers.multistep.milestones", f"must be increasing positive epochs, got {list(milestones)}")
    require(0 < gamma <= 1, "schedulers.multistep.gamma", f"must be in (0, 1], got {gamma}")
    per_step = lr_scheduler.MultiStepLR(optimizer, [m * steps_per_epoch for m in milestones], gamma=gamma)
    return Schedule(optimizer, per_step=per_step, warmup_steps=warmup_steps)


@SCHEDULERS.register(paper="Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, ICLR 2017")
def cosine(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int):
    """Cosine decay to zero over the whole run."""
    total = max(epochs * steps_per_epoch, 1)
    return Schedule(optimizer, per_step=lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), warmup_steps=warmup_steps)


@SCHEDULERS.register(paper="Smith & Topin, Super-Convergence (one-cycle policy), 2019")
def onecycle(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int, *, pct_start: float = 0.3,
             div_factor: float = 25.0):
    """One-cycle: lr rises to the optimizer's lr over pct_start of the run, then anneals (its own warm-up)."""
    require(0 < pct_start < 1, "schedulers.onecycle.pct_start", f"must be in (0, 1), got {pct_start}")
    require(div_factor >= 1, "schedulers.onecycle.div_factor", f"must be >= 1, got {div_factor}")
    if warmup_steps:
        raise ConfigError("train.warmup_steps: onecycle has its own warm-up (pct_start); set warmup_steps: 0")
    max_lr = [g["lr"] for g in optimizer.param_groups]
    per_step = lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(epochs * steps_per_epoch, 1),
                                       pct_start=pct_start, div_factor=div_factor)
    return Schedule(optimizer, per_step=per_step)


@SCHEDULERS.register()
def plateau(optimizer, epochs: int, steps_per_epoch: int, warmup_steps: int, *, factor: float = 0.3,
            patience: int = 1):
    """Multiply the lr by factor when the validation metric (train.select_best_by) stops improving."""
    require(0 < factor < 1, "schedulers.plateau.factor", f"must be in (0, 1), got {factor}")
    require(patience >= 0, "schedulers.plateau.patience", f"must be >= 0, got {patience}")
    per_epoch = lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=factor, patience=patience)
    return Schedule(optimizer, per_epoch=per_epoch, warmup_steps=warmup_steps)
