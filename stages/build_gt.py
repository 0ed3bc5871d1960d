"""Stage build_gt: ground truth of every evaluation set and the training place index, under data/gt/."""
from _common import run


def main():
    from vpr.config import load_config
    from vpr.data import groundtruth as gt

    cfg = load_config()
    roots = {name: f"data/raw/{folder}" for name, folder in cfg.data.test.items()}
    roots["val"] = f"data/raw/{cfg.data.val}"
    # Parse everything first (names, folders), so a bad file fails before anything is written.
    train = gt.build_train_set(f"data/raw/{cfg.data.train}", cfg.gt.train_min_images)
    sets = {name: gt.build_eval_set(root, cfg.gt.radius_m) for name, root in roots.items()}
    gt.save_train_set(train, "data/gt/train", source=cfg.data.train, min_images=cfg.gt.train_min_images)
    print(f"build_gt: train {len(train.paths)} images in {train.num_places} places")
    for name, s in sets.items():
        gt.save_eval_set(s, f"data/gt/{name}", source=roots[name], radius_m=cfg.gt.radius_m)
        print(f"build_gt: {name} {s.num_database} database / {s.num_queries} queries "
              f"({int(s.queries_night.sum())} night, {int((s.positives.counts == 0).sum())} without positive)")


if __name__ == "__main__":
    run(main)
