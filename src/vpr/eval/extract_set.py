"""What the extract stage does for one evaluation set: descriptors of its database and queries by the tested
checkpoint (plus optional ensemble members), with the ``extract`` section's preparation, query method,
multi-scale fusion and PCA, stored with a record of how they were made (info.json)."""

from __future__ import annotations

import io

import numpy as np

from vpr.errors import ConfigError


def check_fixed_grid(model, spec: dict, e: dict, prep) -> None:
    """Aggregators with a fixed grid of positions (MixVPR) need the training size, unscaled."""
    if hasattr(model.aggregator, "positions") and (
        list(e["scales"]) != [1.0]
        or not prep.fixed_size
        or list(prep.size) != list(spec["image_size"])
    ):
        raise ConfigError(
            f"extract.scales / extract.image_size / extract.resize: {spec['aggregator']} needs "
            f"images of the training size {spec['image_size']} (resize stretch or cover_crop) "
            "and scales [1.0]"
        )


def ensemble_members(members, device: str, repo: str = ".") -> list:
    """[(model, weight)] for extract.ensemble: checkpoint paths, or DVC experiments' models/best.pt (``repo``: where
    the experiments are)."""
    from vpr.models.checkpoint import load_model

    models = []
    for i, member in enumerate(members):
        if "checkpoint" in member:
            model, _ = load_model(member["checkpoint"])
        else:
            model = _experiment_model(
                member["experiment"], f"extract.ensemble[{i}].experiment", repo
            )
        models.append((model.to(device), float(member.get("weight", 1.0))))
    return models


def _experiment_model(name: str, key: str, repo: str):
    """The network of models/best.pt in DVC experiment ``name`` (vpr.eval.experiments finds its commit)."""
    import dvc.api

    from vpr.eval.experiments import experiment_revs, experiments_repo
    from vpr.models.checkpoint import load_model

    repo = experiments_repo(repo)
    revs = experiment_revs(repo)
    if name not in revs:
        raise ConfigError(
            f"{key}: no experiment '{name}' (have: {', '.join(sorted(revs)) or 'none'}); "
            "see `dvc exp show -A`"
        )
    with dvc.api.open("models/best.pt", repo=repo, rev=revs[name], mode="rb") as fh:
        return load_model(io.BytesIO(fh.read()))[0]


def pca_training_paths(e: dict, train_gt: str):
    """The training images a PCA is fitted on (fit_on: train): a fixed sample (``seed`` changes training only)."""
    if not (e["pca"]["dim"] and e["pca"]["fit_on"] == "train"):
        return None
    from vpr.data.groundtruth import load_train_set

    paths = load_train_set(train_gt).paths
    rng = np.random.default_rng(0)
    return paths[
        np.sort(rng.choice(len(paths), min(e["pca"]["train_images"], len(paths)), replace=False))
    ]


def extract_set(
    gt_dir: str,
    out_dir: str,
    checkpoint: str,
    e: dict,
    device: str,
    members=(),
    train_gt: str = "data/gt/train",
) -> str:
    """Descriptors of the set in ``gt_dir`` written to ``out_dir``; ``members``: more (model, weight) pairs."""
    from vpr.data.groundtruth import load_eval_set
    from vpr.eval.extract import describe, save_features
    from vpr.eval.prepare import prep_of
    from vpr.models.checkpoint import load_model, weights_md5

    eval_set = load_eval_set(gt_dir)
    model, ckpt = load_model(checkpoint)
    prep = prep_of(e, e["image_size"])
    check_fixed_grid(model, ckpt["spec"], e, prep)
    models = [(model.to(device), 1.0)] + list(members)
    parts = {"database": eval_set.database_paths, "queries": eval_set.queries_paths}
    out = describe(
        models,
        parts,
        prep,
        e["batch_size"],
        e["num_workers"],
        device,
        e["scales"],
        e["fusion"],
        e["pca"],
        pca_training_paths(e, train_gt),
        e["query_method"],
    )
    save_features(
        out_dir,
        out,
        e["dtype"],
        dict(
            descriptor_dim=int(out["database"].shape[1]),
            checkpoint_epoch=ckpt["epoch"],
            weights_md5=weights_md5(model),
            image_size=list(e["image_size"]) if e["image_size"] else None,
            prepare=prep.to_dict(),
            query_method=e["query_method"],
            majority_weight=e["majority_weight"],
            spec=ckpt["spec"],
            scales=list(e["scales"]),
            fusion=e["fusion"],
            ensemble=list(e["ensemble"]),
            pca=e["pca"],
        ),
    )
    return (
        f"{eval_set.num_database} database + {eval_set.num_queries} queries, {out['database'].shape[1]}-D "
        "descriptors" + (f" (ensemble of {len(models)})" if len(models) > 1 else "")
    )
