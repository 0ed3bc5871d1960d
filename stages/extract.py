"""Stage extract@<set>: descriptors of the set's database and queries with models/best.pt or last.pt (plus, optionally,
an ensemble of other checkpoints or experiments, multi-scale fusion and PCA)."""
import io
import os
import subprocess

from _common import argument, eval_set_names, run, load_config


def _experiments_repo() -> str:
    """The repository holding the experiment refs: this one, or, inside a queued experiment's temporary
    workspace (<repo>/.dvc/tmp/exps/<tmp>/), the repository that queued it."""
    here = os.getcwd()
    marker = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep
    return here.split(marker)[0] if marker in here else here


def ensemble_members(members, device):
    """[(model, weight)] for extract.ensemble: checkpoint paths, or DVC experiments' models/best.pt."""
    from vpr.errors import ConfigError
    from vpr.models.checkpoint import load_model
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
    cfg = load_config("extract")
    name = argument(eval_set_names(cfg))   # before importing torch
    from vpr.device import resolve_device
    from vpr.eval.extract_set import extract_set
    e = cfg.extract
    device = resolve_device(e.device, "extract.device")
    summary = extract_set(f"data/gt/{name}", f"data/features/{name}", f"models/{e.checkpoint}.pt", e, device,
                          ensemble_members(e.ensemble, device))
    print(f"extract@{name}: {summary}")


if __name__ == "__main__":
    run(main, takes=("set", "data.test"))
