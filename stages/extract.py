"""Stage extract@<set>: descriptors of the set's database and queries with models/best.pt or last.pt (plus, optionally,
an ensemble of other checkpoints or experiments, multi-scale fusion and PCA)."""
import io
import os
import subprocess
import sys

from _common import run, setup_torch, load_config


def _experiments_repo() -> str:
    """The repository holding the experiment refs: this one, or, inside a queued experiment's temporary
    workspace (<repo>/.dvc/tmp/exps/<tmp>/), the repository that queued it."""
    here = os.getcwd()
    marker = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep
    return here.split(marker)[0] if marker in here else here


def ensemble_members(members, device):
    """[(model, weight)] for extract.ensemble: checkpoint paths, or DVC experiments' models/best.pt."""
    from vpr.errors import ConfigError
    from vpr.train.checkpoint import load_model
    models = []
    for i, member in enumerate(members):
        if "checkpoint" in member:
            model, _ = load_model(member["checkpoint"])
        else:   # a DVC experiment: its commit is under refs/exps/<baseline>/<name>
            import dvc.api
            repo = _experiments_repo()
            refs = subprocess.run(["git", "-C", repo, "for-each-ref", "--format=%(refname) %(objectname)",
                                   "refs/exps"], capture_output=True, text=True).stdout.split("\n")
            revs = {ref.rsplit("/", 1)[-1]: sha for ref, sha in (line.split() for line in refs if line.strip())
                    if ref.count("/") >= 4}   # refs/exps/<2 hex>/<38 hex>/<name>, not refs/exps/stash
            if member["experiment"] not in revs:
                raise ConfigError(f"extract.ensemble[{i}].experiment: no experiment '{member['experiment']}' "
                                  f"(have: {', '.join(sorted(revs)) or 'none'}); see `dvc exp show -A`")
            with dvc.api.open("models/best.pt", repo=repo, rev=revs[member["experiment"]], mode="rb") as fh:
                model, _ = load_model(io.BytesIO(fh.read()))
        models.append((model.to(device), float(member.get("weight", 1.0))))
    return models


def main():
    import numpy as np

    from vpr.data.groundtruth import load_eval_set, load_train_set
    from vpr.errors import ConfigError
    from vpr.eval.extract import describe, save_features
    from vpr.fingerprint import weights_md5
    from vpr.train.checkpoint import load_model

    cfg = load_config()
    name = sys.argv[1]
    e = cfg.extract
    device = setup_torch(e.device)
    eval_set = load_eval_set(f"data/gt/{name}")
    model, ckpt = load_model(f"models/{e.checkpoint}.pt")
    prep = e.prep()
    if hasattr(model.aggregator, "positions") and (list(e.scales) != [1.0] or not prep.fixed_size or
                                                   list(prep.size) != list(ckpt["spec"]["image_size"])):
        raise ConfigError(f"extract.scales / extract.image_size / extract.resize: {ckpt['spec']['aggregator']} needs "
                          f"images of the training size {ckpt['spec']['image_size']} (resize stretch or cover_crop) "
                          "and scales [1.0]")
    models = [(model.to(device), 1.0)] + ensemble_members(e.ensemble, device)
    rng = np.random.default_rng(0)   # fixed: `seed` changes the training randomness and nothing else
    train_paths = None
    if e.pca["dim"] and e.pca["fit_on"] == "train":
        paths = load_train_set("data/gt/train").paths
        train_paths = paths[np.sort(rng.choice(len(paths), min(e.pca["train_images"], len(paths)), replace=False))]
    parts = {"database": eval_set.database_paths, "queries": eval_set.queries_paths}
    out = describe(models, parts, prep, e.batch_size, e.num_workers, device, e.scales, e.fusion, e.pca,
                   train_paths, e.query_method)
    save_features(f"data/features/{name}", out, e.dtype,
                  dict(descriptor_dim=int(out["database"].shape[1]), checkpoint_epoch=ckpt["epoch"],
                       weights_md5=weights_md5(model), image_size=list(e.image_size) if e.image_size else None,
                       prepare=prep.to_dict(), query_method=e.query_method, majority_weight=e.majority_weight,
                       spec=ckpt["spec"], scales=list(e.scales), fusion=e.fusion,
                       ensemble=list(e.ensemble), pca=e.pca))
    print(f"extract@{name}: {eval_set.num_database} database + {eval_set.num_queries} queries, "
          f"{out['database'].shape[1]}-D descriptors" + (f" (ensemble of {len(models)})" if len(models) > 1 else ""))


if __name__ == "__main__":
    run(main)
