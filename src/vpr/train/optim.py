"""Optimizers and learning-rate schedulers, by name. Schedulers step once per epoch."""
from __future__ import annotations

import torch

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
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov and momentum > 0)


@OPTIMIZERS.register(paper="Kingma & Ba, Adam, ICLR 2015")
def adam(params, *, lr: float = 1e-4, weight_decay: float = 0.0):
    """Adam."""
    _check_lr("adam", lr, weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register(paper="Loshchilov & Hutter, Decoupled Weight Decay, ICLR 2019")
def adamw(params, *, lr: float = 1e-4, weight_decay: float = 1e-2):
    """AdamW (decoupled weight decay)."""
    _check_lr("adamw", lr, weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@SCHEDULERS.register()
def none(optimizer, epochs: int):
    """Constant learning rate."""
    return None


@SCHEDULERS.register()
def multistep(optimizer, epochs: int, *, milestones: list = (5, 10, 15), gamma: float = 0.3):
    """Multiply the lr by gamma at each milestone epoch (GSV-Cities: [5, 10, 15, 25], gamma 0.3)."""
    require(all(isinstance(m, int) and m > 0 for m in milestones) and list(milestones) == sorted(milestones),
            "schedulers.multistep.milestones", f"must be increasing positive epochs, got {list(milestones)}")
    require(0 < gamma <= 1, "schedulers.multistep.gamma", f"must be in (0, 1], got {gamma}")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
