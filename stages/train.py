"""Stage train: fit the network on the training places, validating every epoch.

Writes models/best.pt (best validation epoch), models/last.pt (resumable), and the dvclive log in
metrics/train/. If a previous run of the same params and data was interrupted (models/last.pt unfinished),
it continues from there: `dvc repro` after a kill resumes instead of starting over.
"""
import os
import time
import warnings

from _common import run, setup_torch


def main():
    from dvclive import Live

    from vpr.config import load_config
    from vpr.data.groundtruth import load_eval_set, load_training_data
    from vpr.train.checkpoint import load_checkpoint
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.recipe import build_recipe, evaluate_model, fingerprint, seed_everything

    cfg = load_config()
    t = cfg.train
    device = setup_torch(t.device)
    seed_everything(cfg.seed)
    data, val_set = load_training_data("data/gt/train"), load_eval_set("data/gt/val")
    train_set = data.places
    recipe = build_recipe(cfg, data, device)
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
    print(f"train: {len(train_set.paths)} images, {train_set.num_places} places; "
          f"{cfg.backbone} + {cfg.aggregator} -> {recipe.model.descriptor_dim}-D; {cfg.loss} loss, miner "
          f"{cfg.miner}, sampler {cfg.sampler}, method {t.method}, {cfg.optimizer}, scheduler {cfg.scheduler}; "
          f"device {device}"
          + (f"; resuming after epoch {resume['epoch']}" if resume else ""))

    def validate(model):
        return evaluate_model(model, val_set, t.image_size, batch_size=cfg.extract.batch_size, device=device)

    with Live("metrics/train", dvcyaml=False, save_dvc_exp=False) as live:
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
                                patience=t.patience, device=device, seed=cfg.seed, amp=t.amp),
                     checkpoint_meta=dict(spec=recipe.spec, fingerprint=run_id), on_epoch_end=log_and_print,
                     sampler=recipe.sampler, resume=resume)
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        live.summary.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                            stopped_early=result.stopped_early, descriptor_dim=recipe.model.descriptor_dim,
                            **{f"best_{k}": v for k, v in best.items() if k.startswith("val_")})
    print(f"train: best epoch {result.best_epoch} ({t.select_best_by} {result.best_score:.2f}), "
          f"{(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    run(main)
