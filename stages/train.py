"""Stage train: fit the network on the training places, validating every epoch.

Writes models/best.pt (best validation epoch), models/last.pt (resumable), and the dvclive log in
metrics/train/. If a previous run of the same params and data was interrupted (models/last.pt unfinished),
it continues from there: `dvc repro` after a kill resumes instead of starting over.
With train.processes > 1 it re-launches itself under torchrun: DDP, see vpr.train.distributed.
"""
import contextlib
import os
import sys
import time
import warnings

from _common import run, setup_torch, load_config


class _NoLog(contextlib.AbstractContextManager):
    """What ranks other than 0 log to: nothing."""
    summary: dict = {}

    def __exit__(self, *exc):
        return None

    def log_metric(self, *args, **kwargs):
        pass

    def next_step(self):
        pass


def main():
    from dvclive import Live

    from vpr.data.groundtruth import load_eval_set, load_training_data
    from vpr.environment import environment
    from vpr.train.checkpoint import load_checkpoint
    from vpr.errors import ConfigError
    from vpr.train import distributed
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.recipe import build_recipe, evaluate_model, fingerprint, seed_everything

    cfg = load_config()
    t = cfg.train
    if t.processes > 1 and not distributed.launched():
        sys.exit(distributed.relaunch("stages/train.py", t.processes))
    device = setup_torch(t.device)
    ranks = distributed.Ranks()
    if distributed.launched():
        ranks, device = distributed.init(device)
        if t.places_per_batch % ranks.world:
            raise ConfigError(f"train.places_per_batch: {t.places_per_batch} places cannot be split evenly over "
                              f"{ranks.world} processes; use a multiple of {ranks.world}")
    seed_everything(cfg.seed)
    data, val_set = load_training_data("data/gt/train"), load_eval_set("data/gt/val")
    train_set = data.places
    recipe = build_recipe(cfg, data, device, ranks.rank, ranks.world)
    if t.compile:
        if device == "cuda":
            recipe.model.compile()
        else:
            warnings.warn("train.compile: a no-op on CPU (compilation costs more than it saves here)")
    run_id = fingerprint(cfg, "data/gt/train", "data/gt/val")
    resume = None
    if os.path.isfile("models/last.pt"):
        last = load_checkpoint("models/last.pt")
        if last.get("fingerprint") == run_id and not last.get("finished", True):
            resume = last
    distributed.barrier()    # DDP: every rank decided from the same last.pt before rank 0 overwrites it
    train_model = None
    if ranks.world > 1:
        train_model = distributed.wrap(recipe.model, ranks, device, t.sync_batchnorm)
    if ranks.main:
        print(f"train: {len(train_set.paths)} images, {train_set.num_places} places; "
              f"{cfg.backbone} + {cfg.aggregator} -> {recipe.model.descriptor_dim}-D; {cfg.loss} loss, miner "
              f"{cfg.miner}, sampler {cfg.sampler}, method {t.method}, {cfg.optimizer}, scheduler {cfg.scheduler}; device {device}"
              + (f"; {ranks.world} processes (DDP)" if ranks.world > 1 else "")
              + (f"; resuming after epoch {resume['epoch']}" if resume else ""))

    val_prep = cfg.extract.prep(t.image_size)   # validation prepares images as extraction does, at the training size

    def validate(model):
        return evaluate_model(model, val_set, val_prep, batch_size=cfg.extract.batch_size, device=device)

    if ranks.world > 1:
        validate = distributed.rank0_only(validate, ranks)
    with Live("metrics/train", dvcyaml=False, save_dvc_exp=False) if ranks.main else _NoLog() as live:
        def log(row):
            for k, v in row.items():
                if k not in ("epoch", "seconds") and not (k == "loss" and row["epoch"] == 0):
                    live.log_metric(k, v)
            live.next_step()

        def log_and_print(row):
            log(row)
            print(f"epoch {row['epoch']}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"),
                  flush=True)

        for row in (resume or {}).get("loop", {}).get("history", []):   # the log of the interrupted run
            log(row)
        start = time.time()
        result = fit(recipe.model, recipe.objective, recipe.optimizer, recipe.schedule, recipe.batches, validate,
                     LoopConfig(epochs=t.epochs, checkpoint_dir="models", select_best_by=t.select_best_by,
                                patience=t.patience, device=device, seed=cfg.seed, amp=t.amp, rank=ranks.rank),
                     checkpoint_meta=dict(spec=recipe.spec, fingerprint=run_id, prepare=val_prep.to_dict()),
                     on_epoch_end=log_and_print if ranks.main else None, sampler=recipe.sampler, resume=resume,
                     train_model=train_model)
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        live.summary.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                            stopped_early=result.stopped_early, descriptor_dim=recipe.model.descriptor_dim,
                            **{f"best_{k}": v for k, v in best.items() if k.startswith("val_")},
                            environment=environment())   # why two machines' numbers may differ
    train_model = None      # release the DDP wrapper before leaving the process group (see shutdown)
    distributed.shutdown()
    if ranks.main:
        print(f"train: best epoch {result.best_epoch} ({t.select_best_by} {result.best_score:.2f}), "
              f"{(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    run(main)
