"""A suite's runs found in the DVC experiment store (vpr.eval.experiments): a planned run is done when an
experiment with exactly its params and seed finished (under any name: the baseline commit itself counts),
waiting when one of its name is queued or running; only the others are queued."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from vpr.errors import ConfigError
from vpr.eval.statistics import same_params

ACTIVE = ("Queued", "Running")


@dataclass
class Status:
    done: dict = field(default_factory=dict)  # planned name -> vpr.eval.experiments.Run
    waiting: dict = field(default_factory=dict)  # planned name -> Queued / Running
    todo: list = field(default_factory=list)  # planned runs to queue
    repeats: dict = field(
        default_factory=dict
    )  # planned name -> other finished runs of the same params
    failed: list = field(
        default_factory=list
    )  # planned names whose last attempt failed (queued again)
    conflicts: dict = field(
        default_factory=dict
    )  # planned name -> keys of a finished run of that name and
    # other params (the definitions changed since)


def read(repo: str = ".", all_commits: bool = False, attempts: int = 3):
    """The experiment store of the baseline commit (HEAD; ``all_commits``: every commit up to it). Read again
    after a pause when DVC trips over a queue worker's temporary workspace being removed meanwhile."""
    import time

    from vpr.errors import DataError
    from vpr.eval.experiments import read_store

    for attempt in range(attempts):
        try:
            return read_store(repo, all_commits)
        except DataError as exc:
            if attempt == attempts - 1 or ".dvc/tmp/exps" not in str(exc):
                raise
            time.sleep(3)


def _finished(store) -> dict:
    """seed -> the store's finished runs of that seed."""
    by_seed: dict = {}
    for run in store.runs:
        by_seed.setdefault(run.params.get("seed", 0), []).append(run)
    return by_seed


def match(plan, store) -> Status:
    """Which planned runs are in the store, waiting in the queue, or to be queued."""
    status, by_seed = Status(), _finished(store)
    states = {name: state for state, names in store.pending.items() for name in names}
    by_name = {r.name: r for r in store.runs}
    for run in plan.runs:
        found = [r for r in by_seed.get(run.seed, []) if same_params(r.params, run.params)]
        if found:
            found.sort(
                key=lambda r: (r.name != run.name, len(r.name), r.name)
            )  # its own name first, then HEAD
            status.done[run.name] = found[0]
            if len(found) > 1:
                status.repeats[run.name] = [r.name for r in found[1:]]
        elif states.get(run.name) in ACTIVE:
            status.waiting[run.name] = states[run.name]
        else:
            if states.get(run.name) == "Failed":
                status.failed.append(run.name)
            if run.name in by_name:
                status.conflicts[run.name] = _differing_keys(by_name[run.name].params, run.params)
            status.todo.append(run)
    return status


def _differing_keys(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def conflict_error(conflicts: dict) -> ConfigError:
    name, keys = next(iter(conflicts.items()))
    more = (
        f" (and {len(conflicts) - 1} more: {', '.join(list(conflicts)[1:4])})"
        if len(conflicts) > 1
        else ""
    )
    return ConfigError(
        f"experiment {name} is in the store with other params ({', '.join(keys[:3])}): the suite's "
        f"definition changed since it ran{more}; `dvc exp remove {' '.join(conflicts)}` to run them "
        "again, or rename the variant"
    )


def check_workspace(repo: str = ".") -> list[str]:
    """Queued experiments start from the workspace: its params.yaml must be the committed one (else every run
    would carry its changes); modified tracked files are warned about (they go into every run)."""

    def git(*args):
        proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(
                f"{repo}: not a git repository with a commit ({proc.stderr.strip().splitlines()[-1:]}); "
                "run from the project's root"
            )
        return proc.stdout

    if git("diff", "--name-only", "HEAD", "--", "params.yaml").strip():
        raise ConfigError(
            "params.yaml differs from the committed one (git diff params.yaml; `dvc exp run -S` "
            "leaves its values there): a suite's runs start from the committed params; "
            "`git checkout params.yaml` or commit it first"
        )
    changed = [
        line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    return (
        [
            f"warning: uncommitted changes go into every queued run: {', '.join(changed[:5])}"
            + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else "")
        ]
        if changed
        else []
    )


def head_params_text(repo: str = ".") -> str:
    proc = subprocess.run(
        ["git", "-C", repo, "show", "HEAD:params.yaml"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ConfigError(
            f"{repo}: no committed params.yaml (git show HEAD:params.yaml); run from the project's "
            "root, after a first commit"
        )
    return proc.stdout
