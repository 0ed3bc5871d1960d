"""Stage train: fit the network on the training places, validating every epoch.

Writes models/best.pt (best validation epoch), models/last.pt, and the dvclive log in metrics/train/.
"""
import time

from _common import run, setup_torch


def main():
    from dvclive import Live

    from vpr.config import load_config
    from vpr.data.groundtruth import load_eval_set, load_train_set
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.recipe import build_recipe, evaluate_model, seed_everything

    cfg = load_config()
    device = setup_torch(cfg.train.device)
    seed_everything(cfg.seed)
    train_set, val_set = load_train_set("data/gt/train"), load_eval_set("data/gt/val")
    recipe = build_recipe(cfg, train_set, device)
    print(f"train: {len(train_set.paths)} images, {train_set.num_places} places; "
          f"{cfg.backbone} + {cfg.aggregator} -> {recipe.model.descriptor_dim}-D; "
          f"{cfg.loss} loss, miner {cfg.miner}, {cfg.optimizer}, scheduler {cfg.scheduler}; device {device}")

    def validate(model):
        return evaluate_model(model, val_set, cfg.train.image_size, batch_size=cfg.extract.batch_size,
                              device=device)

    with Live("metrics/train", dvcyaml=False, save_dvc_exp=False) as live:
        def log(row):
            if row["epoch"] > 0:
                live.log_metric("loss", row["loss"])
            live.log_metric("lr", row["lr"])
            for k, v in row.items():
                if k.startswith("val_"):
                    live.log_metric(k, v)
            print(f"epoch {row['epoch']}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"),
                  flush=True)
            live.next_step()

        start = time.time()
        result = fit(recipe.model, recipe.objective, recipe.optimizer, recipe.scheduler, recipe.batches, validate,
                     LoopConfig(epochs=cfg.train.epochs, checkpoint_dir="models",
                                select_best_by=cfg.train.select_best_by, patience=cfg.train.patience, device=device),
                     checkpoint_meta=dict(spec=recipe.spec), on_epoch_end=log)
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        live.summary.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                            stopped_early=result.stopped_early, descriptor_dim=recipe.model.descriptor_dim,
                            train_minutes=round((time.time() - start) / 60, 2),
                            **{f"best_{k}": v for k, v in best.items() if k.startswith("val_")})
    print(f"train: best epoch {result.best_epoch} ({cfg.train.select_best_by} {result.best_score:.2f})")


if __name__ == "__main__":
    run(main)
