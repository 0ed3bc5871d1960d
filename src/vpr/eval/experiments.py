"""Runs read from the DVC experiment store: each experiment's (or baseline commit's) params and per-query
results, read straight from its git commit (experiments run from the queue included).

A run is usable once it finished; queued, running and failed experiments are listed so the caller can say
what is not included yet.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from dataclasses import dataclass, field

from vpr import dvc_params
from vpr.errors import DataError


@dataclass
class Run:
    name: str  # experiment name, or the baseline commit / "workspace"
    rev: str  # git revision holding its files ("workspace": the working tree)
    params: dict  # params.yaml, flattened to dotted keys
    sets: dict = field(
        default_factory=dict
    )  # eval set -> per-query rows (vpr.eval.query_results.read_queries)
    environment: dict = field(
        default_factory=dict
    )  # train metrics' environment block (CPU kind, versions)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _git(repo: str, *args: str) -> str | None:
    proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def _read(repo: str, rev: str, path: str) -> str | None:
    if rev == "workspace":
        full = os.path.join(repo, path)
        return open(full).read() if os.path.isfile(full) else None
    return _git(repo, "show", f"{rev}:{path}")


def _eval_sets(repo: str, rev: str) -> list[str]:
    """Names of the evaluation sets whose per-query results the run has (metrics/eval/<set>.queries.tsv)."""
    if rev == "workspace":
        folder = os.path.join(repo, "metrics", "eval")
        names = os.listdir(folder) if os.path.isdir(folder) else []
    else:
        names = [
            os.path.basename(p)
            for p in (_git(repo, "ls-tree", "--name-only", f"{rev}:metrics/eval") or "").split()
        ]
    return sorted(n[: -len(".queries.tsv")] for n in names if n.endswith(".queries.tsv"))


_MISSING = object()


def made_stages(dvc_yaml_text: str | None, params: dict) -> set[str] | None:
    """The stage names dvc.yaml makes with these (flattened) params: ``name``, or ``name@key`` for each item of
    a ``foreach: ${key}``; None when dvc.yaml is unknown."""
    stages = (dvc_params.load(dvc_yaml_text or "") or {}).get("stages")
    if not stages:
        return None
    names = set()
    for name, stage in stages.items():
        over = (stage or {}).get("foreach")
        if not (isinstance(over, str) and over.startswith("${")):
            names.add(name)
            continue
        key = over[2:-1]
        items = [k[len(key) + 1 :].split(".")[0] for k in params if k.startswith(key + ".")]
        value = params.get(key, items)
        names.update(f"{name}@{item}" for item in (value if isinstance(value, list) else items))
    return names


def stale_params(
    lock_text: str | None, params: dict, dvc_yaml_text: str | None = None
) -> list[str]:
    """Dotted keys whose value in dvc.lock (what the stages ran with) differs from params.yaml: a commit whose
    metrics were not reproduced after a params change (an experiment's never are). Lock entries of stages the
    params no longer make (an evaluation set that left ``data.test``: DVC keeps them) are left out."""
    lock = dvc_params.load(lock_text or "") or {}
    made = made_stages(dvc_yaml_text, params)
    stale = set()
    for name, stage in (lock.get("stages") or {}).items():
        if made is not None and name not in made:
            continue
        for key, value in ((stage.get("params") or {}).get("params.yaml") or {}).items():
            ran = flatten(value, key + ".") if isinstance(value, dict) and value else {key: value}
            stale.update(k for k, v in ran.items() if params.get(k, _MISSING) != v)
    return sorted(stale)


def load_run(repo: str, name: str, rev: str) -> Run | None:
    """The run's params and per-query results (None when the commit has no per-query results). A commit whose
    dvc.lock ran other params than its params.yaml says raises StaleRun: its metrics belong to other params."""
    from vpr.eval.query_results import read_queries

    params_text = _read(repo, rev, "params.yaml")
    sets = _eval_sets(repo, rev)
    if params_text is None or not sets:
        return None
    params = flatten(dvc_params.load(params_text) or {})
    tested = {k[len("data.test.") :].split(".")[0] for k in params if k.startswith("data.test.")}
    sets = (
        [s for s in sets if s in tested] if tested else sets
    )  # a set's old results stay tracked after it left
    if not sets:
        return None
    stale = stale_params(_read(repo, rev, "dvc.lock"), params, _read(repo, rev, "dvc.yaml"))
    if stale:
        raise StaleRun(", ".join(stale[:3]) + (", ..." if len(stale) > 3 else ""))
    metrics = json.loads(_read(repo, rev, "metrics/train/metrics.json") or "{}")
    rows = {
        s: read_queries(io.StringIO(_read(repo, rev, f"metrics/eval/{s}.queries.tsv")))
        for s in sets
    }
    return Run(name, rev, params, rows, metrics.get("environment") or {})


class StaleRun(Exception):
    """The committed metrics were produced with other params than the commit's params.yaml."""


def commit_params(repo: str, rev: str | None) -> dict | None:
    """params.yaml of commit ``rev`` (default HEAD), flattened: the committed params, never the working copy's,
    which `dvc exp run -S ...` leaves rewritten."""
    text = _read(repo, rev or "HEAD", "params.yaml")
    return flatten(dvc_params.load(text) or {}) if text else None


def describe_rev(repo: str, rev: str | None) -> str:
    """``rev`` (default HEAD) and its short commit hash, e.g. 'HEAD 9f22e62', for naming a baseline."""
    rev = rev or "HEAD"
    short = (_git(repo, "rev-parse", "--short", f"{rev}^{{commit}}") or "").strip()
    return f"{rev} {short}" if short and not short.startswith(rev) else rev


def experiments_repo(path: str = ".") -> str:
    """The repository holding the experiments: ``path``'s, or, inside a queued experiment's temporary workspace
    (<repo>/.dvc/tmp/exps/<tmp>/), the repository that queued it."""
    here = os.path.abspath(path)
    marker = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep
    return here.split(marker)[0] if marker in here else here


def experiment_revs(repo: str = ".") -> dict[str, str]:
    """Every DVC experiment of ``repo``, of any baseline commit (`dvc exp list -A`): name -> its commit."""
    from dvc.repo import Repo

    with Repo(repo) as dvc_repo:
        listed = dvc_repo.experiments.ls(all_commits=True)
    return {name: rev for experiments in listed.values() for name, rev in experiments if rev}


@dataclass
class Store:
    runs: list[Run]
    pending: dict  # state (Queued, Running, Failed, ...) -> experiment names
    skipped: list[str]  # finished rows without per-query results (made before they existed)
    stale: dict = field(
        default_factory=dict
    )  # name -> params its dvc.lock ran differently (not reproduced)


def read_store(
    repo: str = ".", all_commits: bool = False, workspace: bool = False, rev: str | None = None
) -> Store:
    """Every finished experiment of the baseline commit ``rev`` (default HEAD; every commit before it too with
    ``all_commits``) and the baseline commits themselves; the workspace only with ``workspace``."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        rows = dvc.api.exp_show(repo=repo, revs=rev, num=-1 if all_commits else 1, force=True)
    except DvcException as exc:
        raise DataError(
            f"{repo}: cannot read the DVC experiments ({exc}); run from the repository root"
        ) from None
    runs, pending, skipped, stale = [], {}, [], {}
    for row in rows:
        state, rev = row.get("State"), row.get("rev")
        if rev == "workspace" and not workspace:
            continue
        if state not in (None, "Success"):
            pending.setdefault(state, []).append(row.get("Experiment") or rev)
            continue
        name = row.get("Experiment") or rev
        try:
            run = load_run(repo, name, rev)
        except StaleRun as exc:
            stale[name] = str(exc)
            continue
        (runs.append(run) if run else skipped.append(name))
    return Store(runs, pending, skipped, stale)
