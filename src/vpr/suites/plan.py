"""From a suite to its runs: each variant x seed gets an experiment name, the `dvc exp run -S` items that make
it from the committed params.yaml, and the params DVC will write (computed by DVC's own override function,
so a run found in the experiment store is recognised by its params exactly), validated by the params schema."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

from vpr import dvc_params
from vpr.errors import ConfigError
from vpr.suites.spec import Definitions, Suite, Variant


def run_name(suite: Suite, profile: str, variant: str, seed: int) -> str:
    """The experiment's name: <suite>-<variant>-s<seed> on the suite's own profile, with the profile after the
    suite on any other (one store holds both, and DVC names are unique)."""
    where = suite.name if profile == suite.data else f"{suite.name}-{profile}"
    return f"{where}-{variant}-s{seed}"


def _fill(value, **names):
    """'{seed}' / '{suite}' in the strings of ``value`` replaced."""
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", str(v))
        return value
    if isinstance(value, list):
        return [_fill(x, **names) for x in value]
    if isinstance(value, dict):
        return {k: _fill(x, **names) for k, x in value.items()}
    return value


def profile_overrides(defs: Definitions, suite: Suite, profile: str) -> dict:
    """What every run of ``suite`` on ``profile`` gets before its variant: the profile's recipe, then its budget
    (the suite's own budget for that profile replaces the profile's)."""
    p = defs.profiles[profile]
    out = {}
    if p.recipe:
        from vpr.recipes import RECIPES

        out.update({k: v for k, v, _ in RECIPES[p.recipe].values})
    out.update(suite.budget.get(profile, p.budget))
    return out


def budget_of(defs: Definitions, suite: Suite, profile: str) -> dict:
    return dict(suite.budget.get(profile, defs.profiles[profile].budget))


def variant_overrides(
    defs: Definitions, suite: Suite, variant: Variant, profile: str, seed: int
) -> dict:
    """Dotted key -> value for one run, in the order they apply (later ones win)."""
    out = profile_overrides(defs, suite, profile)
    out.update(variant.overrides)
    out.update(variant.extra(profile))
    return {k: _fill(v, seed=seed, suite=suite.name) for k, v in out.items()}


def local_cambridge(repo: str, profile_data: dict) -> dict:
    """Read the Cambridge photos from a local copy when there is one (vpr.data.cambridge.local_copy)."""
    if "cambridge_sv" not in (profile_data.get("fetch") or []):
        return {}
    from vpr.data.cambridge import local_copy

    found = local_copy(os.path.abspath(repo))
    return (
        {"datasets.cambridge_sv.source": "path", "datasets.cambridge_sv.path": found}
        if found
        else {}
    )


def cli_items(overrides: dict, profile: str, params: dict, seed: int) -> list[str]:
    """The -S items: the data switch first (unless params.yaml already has the profile's data), then the rest."""
    data_keys = {k: v for k, v in overrides.items() if k == "data" or k.startswith("data.")}
    rest = [f"{k}={dvc_params.hydra_value(v)}" for k, v in overrides.items() if k not in data_keys]
    profiles = params.get("data_profiles") or {}
    if profile not in profiles:
        raise ConfigError(
            f"params.yaml: no data profile '{profile}' (data_profiles: {', '.join(profiles)})"
        )
    switch = []
    if (
        params.get("data") == profiles[profile]
    ):  # already the profile: its keys can be set one by one
        switch = [f"{k}={dvc_params.hydra_value(v)}" for k, v in data_keys.items()]
    else:
        if not data_keys:
            switch = ["data=${data_profiles.%s}" % profile]
        else:  # the profile with the variant's data keys, as one whole section (~ removes, + adds)
            data = json.loads(json.dumps(profiles[profile]))
            for k, v in data_keys.items():
                node, *path = data, *k.split(".")[1:]
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = v
            switch = ["~data", "+data=" + dvc_params.hydra_value(data)]
    return switch + rest + [f"seed={seed}"]


def apply_items(params_text: str, items: list[str]) -> dict:
    """params.yaml as `dvc exp run -S <items>` writes it (DVC's own function), as a dict."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "params.yaml")
        with open(path, "w") as fh:
            fh.write(params_text)
        try:
            apply_overrides(path, list(items))
        except InvalidArgumentError as exc:
            cause = str(exc.__cause__ or exc).splitlines()[0]
            raise ConfigError(f"dvc exp run -S rejects these overrides ({cause})") from None
        with open(path) as fh:
            return dvc_params.load(fh) or {}


@dataclass
class Run:
    name: str  # experiment name: <suite>-<variant>-s<seed>
    variant: str
    seed: int
    wave: int  # 0 first; a variant with _after runs in a later wave
    items: list  # -S items
    params: dict = field(default_factory=dict)  # flattened params.yaml the experiment will have
    cost: float = 1.0


@dataclass
class Plan:
    suite: Suite
    profile: str
    seeds: list
    runs: list  # Run, in queue order
    skipped: dict  # variant -> why it does not run on this profile
    extra: dict  # overrides every run gets from the profile (recipe, budget, local copy)


def _waves(suite: Suite) -> dict:
    """variant -> wave: 0 without _after, else one more than the latest it waits for."""
    wave: dict = {}

    def of(name, seen=()):
        if name in seen:
            raise ConfigError(
                f"suite '{suite.name}': variants.{name}._after: a cycle ({' -> '.join(seen + (name,))})"
            )
        if name not in wave:
            after = suite.variant(name).after
            wave[name] = 1 + max(of(a, seen + (name,)) for a in after) if after else 0
        return wave[name]

    for v in suite.variants:
        of(v.name)
    return wave


def make_plan(
    defs: Definitions,
    suite: Suite,
    profile: str,
    seeds: list,
    params_text: str,
    repo: str = ".",
    check: bool = True,
) -> Plan:
    """Every run of ``suite`` on ``profile`` for ``seeds``, its params computed and (``check``) validated."""
    if profile not in defs.profiles:
        raise ConfigError(
            f"--data {profile}: no profile '{profile}' in {defs.path} (profiles: {', '.join(defs.profiles)})"
        )
    params = dvc_params.load(params_text) or {}
    extra = {
        **profile_overrides(defs, suite, profile),
        **local_cambridge(repo, (params.get("data_profiles") or {}).get(profile) or {}),
    }
    waves, runs, skipped = _waves(suite), [], {}
    for v in suite.variants:
        if not v.runs_on(profile):
            skipped[v.name] = f"not on {profile} (runs on {', '.join(v.profiles)})"
    for wave in sorted(set(waves.values())):
        for seed in seeds:
            for v in suite.variants:
                if waves[v.name] != wave or v.name in skipped:
                    continue
                missing = [a for a in v.after if a in skipped]
                if missing:
                    skipped[v.name] = f"needs {', '.join(missing)}, which does not run on {profile}"
                    continue
                overrides = {**extra, **variant_overrides(defs, suite, v, profile, seed)}
                items = cli_items(overrides, profile, params, seed)
                runs.append(
                    Run(
                        run_name(suite, profile, v.name, seed),
                        v.name,
                        seed,
                        wave,
                        items,
                        cost=v.cost,
                    )
                )
    _fill_params(runs, params_text, suite, profile, check)
    return Plan(suite, profile, list(seeds), runs, skipped, extra)


def _fill_params(runs: list, params_text: str, suite: Suite, profile: str, check: bool) -> None:
    """Each run's params as DVC will write them, computed once per distinct set of items but the seed."""
    from vpr.config import validate
    from vpr.eval.experiments import flatten

    done: dict = {}
    for run in runs:
        key = json.dumps(run.items[:-1])
        if key not in done:
            try:
                raw = apply_items(params_text, run.items[:-1])
                if check:
                    validate(
                        json.loads(json.dumps(raw))
                    )  # a copy: validate fills defaults in place
            except ConfigError as exc:
                raise ConfigError(
                    f"suite '{suite.name}', variant '{run.variant}' on {profile}: {exc}"
                ) from None
            done[key] = flatten(raw)
        run.params = {**done[key], "seed": run.seed}
