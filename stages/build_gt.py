"""Stage build_gt: ground truth of every evaluation set and the training place index, under data/gt/."""

from _common import load_config, run


def main():
    from vpr.data import groundtruth as gt
    from vpr.data import layouts
    from vpr.errors import DataError

    cfg = load_config("build_gt")
    opts = dict(strict=cfg.gt.strict, check=cfg.gt.check_images, progress=True)
    folders = {**cfg.data.test, "val": cfg.data.val}
    # Index everything first (names, images, night rules), so a bad file fails before anything is written.
    places = {k: cfg.gt[k] for k in ("train_places", "place_m", "place_headings")}
    train, train_info = layouts.build_train_index(
        f"data/raw/{cfg.data.train}", cfg.gt.train_min_images, places=places, **opts
    )
    train, extra_info = layouts.add_extra_images(
        train, [f"data/raw/{f}" for f in cfg.data.extra_train], **opts
    )
    train_info.update(extra_info)
    mining = (
        layouts.build_eval_index(f"data/raw/{cfg.data.mining}", cfg.gt.radius_m, **opts)[0]
        if cfg.data.mining
        else None
    )
    target = gt.list_images(f"data/raw/{cfg.data.target}") if cfg.data.target else None
    sets = {}
    for name, folder in folders.items():
        night = cfg.data.night.get(
            name
        )  # the set's night rule, checked, defaults filled in (or None)
        sets[name] = layouts.build_eval_index(
            f"data/raw/{folder}",
            cfg.gt.radius_m,
            night=night,
            known_as=folder,
            unlabelled_queries=cfg.gt.unlabelled_queries and name != "val",
            **opts,
        )
    if not sets["val"][0].has_coordinates:
        raise DataError(
            f"data.val: the queries of data/raw/{cfg.data.val} carry no coordinates; validation needs "
            f"them (choose a labelled set)"
        )
    gt.save_train_set(
        train,
        "data/gt/train",
        source=cfg.data.train,
        min_images=cfg.gt.train_min_images,
        **train_info,
    )
    if (
        mining is not None
    ):  # the training-side sets live under data/gt/train: the train stage's one GT dependency
        gt.save_eval_set(
            mining,
            "data/gt/train/mining",
            source=f"data/raw/{cfg.data.mining}",
            radius_m=cfg.gt.radius_m,
        )
    if target is not None:
        gt.save_image_list(target, "data/gt/train/target_paths.npy")
    print(
        f"build_gt: train {len(train.paths)} images in {train.num_places} places ({train_info['layout']} layout, "
        f"places by {train_info['places']})"
        + (f", {train_info['extra_images']} extra images" if cfg.data.extra_train else "")
        + (
            f"; mining set {mining.num_database} database / {mining.num_queries} queries"
            if mining
            else ""
        )
        + (f"; {len(target)} unlabeled target images" if target is not None else "")
    )
    for name, (s, info) in sets.items():
        gt.save_eval_set(
            s,
            f"data/gt/{name}",
            source=f"data/raw/{folders[name]}",
            radius_m=cfg.gt.radius_m,
            **info,
        )
        line = f"build_gt: {name} {s.num_database} database / {s.num_queries} queries"
        if not s.has_coordinates:
            line += " (queries without coordinates: no recall)"
        else:
            line += f" ({int(s.queries_night.sum())} night, {int((s.positives.counts == 0).sum())} without positive)"
        if "night_counts" in info:
            counts = ", ".join(f"{rule} {n}" for rule, n in info["night_counts"].items())
            line += f"; night queries by rule: {counts} (using '{info['night_rule']}')"
        print(line)


if __name__ == "__main__":
    run(main)
