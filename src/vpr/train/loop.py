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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from vpr.errors import TrainingError
from vpr.train.checkpoint import save_checkpoint


@dataclass
class LoopConfig:
    epochs: int
    checkpoint_dir: str
    select_best_by: str = "R@1"  # validation metric that picks best.pt
    patience: int = 0  # stop after this many epochs without improvement (0 = never)
    device: str = "cpu"
    seed: int = 0
    amp: bool = False  # mixed precision (CUDA only; a no-op on CPU)
    rank: int = 0  # DDP: only rank 0 writes checkpoints (vpr.train.distributed)
    meta: dict = field(
        default_factory=dict
    )  # saved in every checkpoint (model spec, run fingerprint, ...)


@dataclass
class LoopState:
    """What the loop knows between epochs; saved in checkpoints (``loop``) so a resumed run continues it."""

    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list = field(default_factory=list)
    seconds: float = (
        0.0  # wall time of the epochs so far, validation included (a resumed run's too)
    )


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0  # wall time of all epochs, validation included


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed python, numpy and torch from (seed, epoch): randomness of an epoch does not depend on the past."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def fit(
    training,
    cfg: LoopConfig,
    validate: Callable,
    on_epoch_end: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> FitResult:
    """Train ``training`` (vpr.train.setup.Training) for ``cfg.epochs`` epochs (0 = only evaluate the initial
    model); ``validate(model) -> metrics`` (a 'calibration' entry, plain numbers: vpr.eval.confidence, is stored
    in that epoch's checkpoints instead of the metrics). Epoch 0 is the initial model's validation, so ``best.pt``
    always exists and training that never beats the starting point says so. ``resume``: a ``last.pt`` to continue."""
    loop = _Loop(training, cfg, validate, on_epoch_end)
    start = loop.restore(resume) if resume is not None else loop.start()
    for epoch in range(start, cfg.epochs + 1):
        if loop.state.stopped_early:
            break
        loop.train_epoch(epoch)
    st = loop.state
    return FitResult(
        st.best_epoch,
        st.best_score,
        st.history[-1]["epoch"],
        st.stopped_early,
        start if resume is not None else None,
        st.history,
        st.seconds,
    )


class _Loop:
    def __init__(self, training, cfg: LoopConfig, validate, on_epoch_end):
        self.t, self.cfg, self.validate, self.on_epoch_end = training, cfg, validate, on_epoch_end
        self.state = LoopState()
        self.best_path = os.path.join(cfg.checkpoint_dir, "best.pt")
        self.last_path = os.path.join(cfg.checkpoint_dir, "last.pt")
        self.use_amp = cfg.amp and cfg.device == "cuda"
        if cfg.amp and not self.use_amp:
            warnings.warn("train.amp: mixed precision is a no-op on CPU; training in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def lr(self) -> float:
        return float(self.t.optimizer.param_groups[0]["lr"])

    def start(self) -> int:
        seed_epoch(self.cfg.seed, 0)
        self.end_epoch(0, None, time.time(), self.lr(), {})  # the untrained model: no training loss
        return 1

    def restore(self, ckpt: dict) -> int:
        t = self.t
        t.model.load_state_dict(ckpt["model"])
        t.objective.load_state_dict(ckpt["objective"])
        t.optimizer.load_state_dict(ckpt["optimizer"])
        if t.schedule is not None and ckpt.get("schedule") is not None:
            t.schedule.load_state_dict(ckpt["schedule"])
        if hasattr(t.sampler, "load_state_dict") and ckpt.get("sampler") is not None:
            t.sampler.load_state_dict(ckpt["sampler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = LoopState(**ckpt["loop"])
        return ckpt["epoch"] + 1

    def snapshot(self, epoch: int, metrics: dict) -> dict:
        t = self.t
        return dict(
            model=t.model.state_dict(),
            objective=t.objective.state_dict(),
            optimizer=t.optimizer.state_dict(),
            schedule=t.schedule.state_dict() if t.schedule is not None else None,
            sampler=t.sampler.state_dict() if hasattr(t.sampler, "state_dict") else None,
            scaler=self.scaler.state_dict(),
            epoch=epoch,
            metrics=metrics,
            loop=asdict(self.state),
            finished=self.state.stopped_early or epoch >= self.cfg.epochs,
            **self.cfg.meta,
        )

    def end_epoch(
        self, epoch: int, loss: float | None, started: float, lr: float, logs: dict
    ) -> None:
        """Validate, log the epoch's row (``train_loss``: the epoch's mean loss, none for epoch 0; ``seconds``:
        its training time), keep best/last checkpoints, decide on early stopping."""
        cfg, st = self.cfg, self.state
        seconds = time.time() - started if epoch else 0.0
        metrics = dict(self.validate(self.t.model))
        calibration = metrics.pop("calibration", None)  # of this very model: goes with its weights
        st.seconds += time.time() - started
        if cfg.select_best_by not in metrics:
            raise TrainingError(
                f"train.select_best_by: validation gives {sorted(metrics)}, not '{cfg.select_best_by}'"
            )
        row = dict(
            epoch=epoch,
            **({} if loss is None else {"train_loss": loss}),
            lr=lr,
            seconds=seconds,
            **logs,
            **{f"val_{k}": v for k, v in metrics.items()},
        )
        st.history = st.history + [row]
        improved = metrics[cfg.select_best_by] > st.best_score
        if improved:
            st.best_score, st.best_epoch, st.bad_epochs = metrics[cfg.select_best_by], epoch, 0
        else:
            st.bad_epochs += 1
        if epoch > 0 and self.t.schedule is not None:
            self.t.schedule.epoch_end(metrics[cfg.select_best_by])
        st.stopped_early = bool(epoch > 0 and cfg.patience and st.bad_epochs >= cfg.patience)
        content = self.snapshot(epoch, metrics)
        if calibration is not None:
            content["calibration"] = calibration
        if cfg.rank == 0:
            if improved:
                save_checkpoint(self.best_path, **content)
            save_checkpoint(
                self.last_path, **content
            )  # after best.pt: a kill in between loses nothing
        if self.on_epoch_end:
            self.on_epoch_end(row)

    def train_epoch(self, epoch: int) -> None:
        t, cfg = self.t, self.cfg
        seed_epoch(cfg.seed, epoch)
        start, lr = time.time(), self.lr()
        t.model.train()
        t.objective.train()
        total, steps, term_totals = 0.0, 0, {}
        bar = tqdm(
            t.batches(epoch),
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            leave=False,
            **({"disable": True} if cfg.rank else {}),
        )
        for batch in bar:
            loss, logs = self.step(batch, epoch, steps + 1)
            total, steps = total + loss, steps + 1
            for k, v in logs.items():
                term_totals[k] = term_totals.get(k, 0.0) + v
            bar.set_postfix(loss=f"{total / steps:.4f}")
        term_means = {k: v / max(steps, 1) for k, v in term_totals.items() if len(term_totals) > 1}
        self.end_epoch(epoch, total / max(steps, 1), start, lr, term_means)

    def step(self, batch: dict, epoch: int, number: int) -> tuple[float, dict]:
        """One optimizer step on ``batch``; a NaN/inf loss stops training (the last good checkpoint stays)."""
        t, cfg = self.t, self.cfg
        batch = {
            k: v.to(cfg.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
            loss, logs = t.objective(t.forward_model or t.model, batch)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at epoch {epoch}, step {number}; the last good checkpoint "
                f"is kept in {self.last_path}; lower the learning rate"
            )
        t.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(t.optimizer)
        self.scaler.update()
        if t.schedule is not None:
            t.schedule.step()
        return loss.item(), logs
