"""One training session, as the train stage runs it: DDP launch, the resume decision, training with
validation every epoch, and the log (dvclive: train_loss, lr, validation recalls per epoch; a summary; the
training time in its own file, time.json, so that metrics.json stays bit-reproducible).

Writes ``models/best.pt`` (best validation epoch), ``models/last.pt`` (resumable) and the log. If a run of the
same params and data was interrupted (``last.pt`` unfinished), it continues from there. With
``train.processes > 1`` the calling script is re-launched under torchrun (DDP, vpr.train.distributed).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

from vpr.device import resolve_device
from vpr.train import distributed


class TrainLog(contextlib.AbstractContextManager):
    """Epoch rows to dvclive (rank 0) and to stdout; other ranks log nothing."""

    def __init__(self, folder: str, active: bool):
        self.live, self.folder = None, folder
        if active:
            from dvclive import Live

            self.live = Live(folder, dvcyaml=False, save_dvc_exp=False)

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.end()
        return None

    def row(self, row: dict, echo: bool = True) -> None:
        if self.live is None:
            return
        for k, v in row.items():
            if k not in ("epoch", "seconds"):
                self.live.log_metric(k, v)
        self.live.next_step()
        if echo:
            print(
                f"{epoch_name(row['epoch'])}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"),
                flush=True,
            )

    def summary(self, **values) -> None:
        if self.live is not None:
            self.live.summary.update(values)

    def timing(self, seconds: float) -> float:
        """The epochs' wall time (validation included; a resumed run's epochs before its interruption too) in
        minutes, written to ``<folder>/time.json`` as ``train_minutes``."""
        minutes = round(seconds / 60, 2)
        if self.live is not None:
            from vpr.io import write_json

            write_json(os.path.join(self.folder, "time.json"), {"train_minutes": minutes})
        return minutes


def epoch_name(epoch: int) -> str:
    """'epoch 3'; epoch 0 is the model before any training step."""
    return "epoch 0 (untrained model)" if epoch == 0 else f"epoch {epoch}"


def resume_checkpoint(models: str, run_id: str) -> dict | None:
    """``last.pt`` when it belongs to this very run (params and data) and is unfinished; else None."""
    from vpr.models.checkpoint import load_checkpoint

    path = os.path.join(models, "last.pt")
    if not os.path.isfile(path):
        return None
    last = load_checkpoint(path)
    return last if last.get("fingerprint") == run_id and not last.get("finished", True) else None


def run_training(
    cfg,
    script: str,
    gt_dir: str = "data/gt",
    models: str = "models",
    log_dir: str = "metrics/train",
) -> None:
    """Train as the config says (``script``: what torchrun re-launches for DDP)."""
    from vpr.data.groundtruth import load_eval_set, load_info, load_training_data
    from vpr.environment import environment
    from vpr.eval.prepare import prep_of
    from vpr.eval.validate import evaluate_model
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.setup import build_training, run_fingerprint, seed_everything

    t = cfg.train
    if t.processes > 1 and not distributed.launched():
        sys.exit(distributed.relaunch(script, t.processes))
    device = resolve_device(t.device, "train.device")
    ranks, device = (
        distributed.init(device) if distributed.launched() else (distributed.Ranks(), device)
    )
    seed_everything(cfg.seed)
    data, val_set = load_training_data(f"{gt_dir}/train"), load_eval_set(f"{gt_dir}/val")
    training = build_training(cfg, data, device, ranks.rank, ranks.world)
    if t.compile:
        if device == "cuda":
            training.model.compile()
        else:
            warnings.warn(
                "train.compile: a no-op on CPU (compilation costs more than it saves here)"
            )
    run_id = run_fingerprint(cfg, f"{gt_dir}/train", f"{gt_dir}/val")
    resume = resume_checkpoint(models, run_id)
    distributed.barrier()  # DDP: every rank decided from the same last.pt before rank 0 overwrites it
    if ranks.world > 1:
        training.forward_model = distributed.wrap(training.model, ranks, device, t.sync_batchnorm)
    if ranks.main:
        print(_announce(cfg, data.places, training, device, ranks.world, resume), flush=True)
    val_prep = prep_of(cfg.extract, t.image_size)  # validation prepares images as extraction does
    radius_m = float(
        load_info(f"{gt_dir}/val").get("radius_m", 25.0)
    )  # the confidence: P(top-1 within it)

    def validate(model):  # + the confidence calibration of this model, stored in its checkpoints
        return evaluate_model(
            model,
            val_set,
            val_prep,
            batch_size=cfg.extract.batch_size,
            device=device,
            calibrate_radius_m=radius_m,
        )

    loop = LoopConfig(
        epochs=t.epochs,
        checkpoint_dir=models,
        select_best_by=t.select_best_by,
        patience=t.patience,
        device=device,
        seed=cfg.seed,
        amp=t.amp,
        rank=ranks.rank,
        meta=dict(spec=training.spec, fingerprint=run_id, prepare=val_prep.to_dict()),
    )
    with TrainLog(log_dir, ranks.main) as log:
        for row in (
            (resume or {}).get("loop", {}).get("history", [])
        ):  # the log of the interrupted run
            log.row(row, echo=False)
        result = fit(
            training,
            loop,
            distributed.rank0_only(validate, ranks) if ranks.world > 1 else validate,
            log.row,
            resume,
        )
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        log.summary(
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            stopped_early=result.stopped_early,
            descriptor_dim=training.model.descriptor_dim,
            **{f"best_{k}": v for k, v in best.items() if k.startswith("val_")},
            environment=environment(),
        )  # why two machines' numbers may differ
        minutes = log.timing(result.seconds)
    training.forward_model = None  # release the DDP wrapper before leaving the process group
    distributed.shutdown()
    if ranks.main:
        print(
            f"train: best {epoch_name(result.best_epoch)} ({t.select_best_by} {result.best_score:.2f}), "
            f"{minutes:.1f} min"
        )


def _announce(cfg, places, training, device: str, world: int, resume) -> str:
    r, t = cfg.raw, cfg.train
    return (
        f"train: {len(places.paths)} images, {places.num_places} places; {r['backbone']} + {r['aggregator']} -> "
        f"{training.model.descriptor_dim}-D; {r['loss']} loss, miner {r['miner']}, sampler {r['sampler']}, "
        f"method {t.method}, {r['optimizer']}, scheduler {r['scheduler']}; device {device}"
        + (f"; {world} processes (DDP)" if world > 1 else "")
        + (f"; resuming after epoch {resume['epoch']}" if resume else "")
    )
