"""Suite definitions: the declarative file read and checked for shape (names, keys, types), one line per
mistake naming the suite and the key. Whether the overrides are valid params is checked by vpr.suites.plan,
against the params schema (it needs params.yaml)."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field

import yaml

from vpr import dvc_params
from vpr.errors import ConfigError

DEFINITIONS = os.path.join(os.path.dirname(__file__), "definitions.yaml")
NAME = re.compile(
    r"[a-z0-9][a-z0-9_]*\Z"
)  # suite, variant and grid labels: part of experiment names
SUITE_KEYS = {
    "question",
    "data",
    "seeds",
    "baseline",
    "variants",
    "grid",
    "layout",
    "budget",
    "note",
}
PROFILE_KEYS = {"recipe", "budget", "minutes", "note"}
LAYOUT_KEYS = {"recalls", "night"}
META_KEYS = {"_cost", "_after", "_profiles", "_note"}


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict  # dotted params key -> value (before the profile's own values)
    cost: float = 1.0  # run time relative to a baseline run
    after: tuple = ()  # variants whose experiments must exist before this one runs
    profiles: dict | None = None  # profile -> extra overrides; None: every profile, nothing extra
    note: str = ""

    def runs_on(self, profile: str) -> bool:
        return self.profiles is None or profile in self.profiles

    def extra(self, profile: str) -> dict:
        return dict((self.profiles or {}).get(profile) or {})


@dataclass(frozen=True)
class Profile:
    name: str
    recipe: str | None = None
    budget: dict = field(default_factory=dict)
    minutes: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    question: str
    baseline: str
    variants: tuple  # Variant, the baseline first, then in the file's order
    data: str = "synth"
    seeds: int = 3
    recalls: tuple = (1, 5)
    night: bool = True
    budget: dict = field(
        default_factory=dict
    )  # profile -> overrides replacing the profile's budget
    note: str = ""

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


@dataclass(frozen=True)
class Definitions:
    path: str
    profiles: dict  # name -> Profile
    suites: dict  # name -> Suite

    def suite(self, name: str) -> Suite:
        if name not in self.suites:
            import difflib

            close = difflib.get_close_matches(name, list(self.suites), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"no suite '{name}'{hint} (suites: {', '.join(self.suites)}; "
                f"`python -m vpr.suites list` describes them)"
            )
        return self.suites[name]


class _Where:
    """Builds the one-line errors: '<file>: suite 'x': <key>: <message>'."""

    def __init__(self, path: str, what: str):
        self.path, self.what = path, what

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(
            f"{self.path}: {self.what}: {key}: {message}"
            if key
            else f"{self.path}: {self.what}: {message}"
        )

    def need(self, ok: bool, key: str, message: str) -> None:
        if not ok:
            raise self.error(key, message)


def load(path: str | None = None) -> Definitions:
    """The definitions file (default: the one shipped with the package), checked for shape."""
    path = path or DEFINITIONS
    try:
        with open(path) as fh:
            raw = dvc_params.load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the suite definitions ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    top = _Where(path, "top level")
    top.need(
        isinstance(raw, dict) and set(raw) <= {"profiles", "suites"},
        "",
        "expected a mapping with 'profiles' and 'suites'",
    )
    top.need(
        isinstance(raw.get("suites"), dict) and bool(raw["suites"]),
        "suites",
        "expected a mapping of suites",
    )
    profiles = {
        name: _profile(path, name, spec) for name, spec in (raw.get("profiles") or {}).items()
    }
    suites = {name: _suite(path, name, spec, profiles) for name, spec in raw["suites"].items()}
    return Definitions(path, profiles, suites)


def _mapping(where: _Where, key: str, value) -> dict:
    where.need(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
    return value


def _overrides(where: _Where, key: str, value) -> dict:
    """A mapping of dotted params keys -> values, nested mappings flattened to their leaves (so a value
    replaces exactly the key it names, as `dvc exp run -S key=value` does)."""
    out = {}
    for k, v in _mapping(where, key, value or {}).items():
        where.need(
            isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", k) is not None,
            f"{key}.{k}",
            "expected a dotted params key, e.g. optimizers.adam.lr",
        )
        if isinstance(v, dict) and v:
            out.update({f"{k}.{kk}": vv for kk, vv in _overrides(where, f"{key}.{k}", v).items()})
        else:
            out[k] = v
    return out


def _profile(path: str, name: str, spec) -> Profile:
    where = _Where(path, f"profile '{name}'")
    spec = _mapping(where, "", spec or {})
    unknown = set(spec) - PROFILE_KEYS
    where.need(
        not unknown,
        ", ".join(sorted(unknown)),
        f"unknown key (allowed: {', '.join(sorted(PROFILE_KEYS))})",
    )
    minutes = spec.get("minutes")
    where.need(
        minutes is None or (isinstance(minutes, (int, float)) and minutes > 0),
        "minutes",
        f"expected minutes per run > 0 or null, got {minutes!r}",
    )
    if spec.get("recipe") is not None:
        from vpr.recipes import RECIPES

        where.need(
            spec["recipe"] in RECIPES,
            "recipe",
            f"no recipe '{spec['recipe']}' (recipes: {', '.join(RECIPES)})",
        )
    return Profile(
        name,
        spec.get("recipe"),
        _overrides(where, "budget", spec.get("budget")),
        float(minutes) if minutes else None,
        str(spec.get("note") or ""),
    )


def _variant(where: _Where, key: str, name: str, spec, profiles: dict) -> Variant:
    where.need(
        isinstance(name, str) and NAME.match(name) is not None,
        key,
        "variant names are lower-case letters, digits and '_' (they name experiments)",
    )
    spec = dict(_mapping(where, key, spec or {}))
    meta = {k: spec.pop(k) for k in list(spec) if str(k).startswith("_")}
    unknown = set(meta) - META_KEYS
    where.need(
        not unknown,
        f"{key}.{', '.join(sorted(unknown))}",
        f"unknown key (allowed: {', '.join(sorted(META_KEYS))})",
    )
    cost = meta.get("_cost", 1.0)
    where.need(
        isinstance(cost, (int, float)) and cost > 0,
        f"{key}._cost",
        f"expected a number > 0, got {cost!r}",
    )
    after = meta.get("_after") or []
    where.need(
        isinstance(after, list) and all(isinstance(a, str) for a in after),
        f"{key}._after",
        "expected a list of variant names",
    )
    per_profile = None
    if "_profiles" in meta:
        per_profile = {}
        for p, extra in _mapping(where, f"{key}._profiles", meta["_profiles"]).items():
            where.need(
                p in profiles,
                f"{key}._profiles.{p}",
                f"no profile '{p}' (profiles: {', '.join(profiles)})",
            )
            per_profile[p] = _overrides(where, f"{key}._profiles.{p}", extra)
    return Variant(
        name,
        _overrides(where, key, spec),
        float(cost),
        tuple(after),
        per_profile,
        str(meta.get("_note") or ""),
    )


def _grid(where: _Where, grid, profiles: dict) -> list[Variant]:
    """The cartesian product of the grid's axes: names joined by '-', overrides and costs combined."""
    axes = []
    for axis, entries in _mapping(where, "grid", grid).items():
        entries = _mapping(where, f"grid.{axis}", entries)
        where.need(bool(entries), f"grid.{axis}", "expected at least one entry")
        axes.append(
            [
                _variant(where, f"grid.{axis}.{label}", label, spec, profiles)
                for label, spec in entries.items()
            ]
        )
    out = []
    for combo in itertools.product(*axes):
        overrides, notes = {}, []
        for part in combo:
            overrides.update(part.overrides)
            notes += [part.note] if part.note else []
        cost = max(p.cost for p in combo)
        profiles_of = [p.profiles for p in combo if p.profiles is not None]
        out.append(
            Variant(
                "-".join(p.name for p in combo),
                overrides,
                cost,
                tuple(a for p in combo for a in p.after),
                profiles_of[0]
                if len(profiles_of) == 1
                else (
                    None
                    if not profiles_of
                    else {
                        k: {kk: vv for d in profiles_of for kk, vv in (d.get(k) or {}).items()}
                        for k in set.intersection(*(set(d) for d in profiles_of))
                    }
                ),
                "; ".join(notes),
            )
        )
    return out


def _suite(path: str, name: str, spec, profiles: dict) -> Suite:
    where = _Where(path, f"suite '{name}'")
    where.need(
        isinstance(name, str) and NAME.match(name) is not None,
        "",
        "suite names are lower-case letters, digits and '_' (they name experiments)",
    )
    spec = _mapping(where, "", spec)
    unknown = set(spec) - SUITE_KEYS
    where.need(
        not unknown,
        ", ".join(sorted(map(str, unknown))),
        f"unknown key (allowed: {', '.join(sorted(SUITE_KEYS))})",
    )
    where.need(
        isinstance(spec.get("question"), str) and spec["question"].strip() != "",
        "question",
        "say which question the suite answers (one sentence)",
    )
    variants = [
        _variant(where, f"variants.{k}", k, v, profiles)
        for k, v in (spec.get("variants") or {}).items()
    ]
    if spec.get("grid") is not None:
        variants += _grid(where, spec["grid"], profiles)
    names = [v.name for v in variants]
    where.need(len(variants) >= 2, "variants", "expected a baseline and at least one other variant")
    where.need(len(set(names)) == len(names), "variants", "two variants have the same name")
    base = spec.get("baseline")
    where.need(
        base in names,
        "baseline",
        f"expected the name of one of its variants ({', '.join(names)}), got {base!r}",
    )
    for v in variants:
        for a in v.after:
            where.need(
                a in names and a != v.name, f"variants.{v.name}._after", f"no other variant '{a}'"
            )
    data = spec.get("data", "synth")
    where.need(data in profiles, "data", f"no profile '{data}' (profiles: {', '.join(profiles)})")
    seeds = spec.get("seeds", 3)
    where.need(
        isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1,
        "seeds",
        f"expected a number of seeds >= 1, got {seeds!r}",
    )
    layout = _mapping(where, "layout", spec.get("layout") or {})
    where.need(
        set(layout) <= LAYOUT_KEYS,
        "layout",
        f"unknown key (allowed: {', '.join(sorted(LAYOUT_KEYS))})",
    )
    recalls = layout.get("recalls", [1, 5])
    where.need(
        isinstance(recalls, list)
        and bool(recalls)
        and all(isinstance(n, int) and n >= 1 for n in recalls)
        and 1 in recalls,
        "layout.recalls",
        f"expected a list of N of R@N including 1, got {recalls!r}",
    )
    where.need(
        isinstance(layout.get("night", True), bool), "layout.night", "expected true or false"
    )
    budget = {}
    for p, values in _mapping(where, "budget", spec.get("budget") or {}).items():
        where.need(
            p in profiles, f"budget.{p}", f"no profile '{p}' (profiles: {', '.join(profiles)})"
        )
        budget[p] = _overrides(where, f"budget.{p}", values)
    ordered = [next(v for v in variants if v.name == base)] + [
        v for v in variants if v.name != base
    ]
    return Suite(
        name,
        spec["question"].strip(),
        base,
        tuple(ordered),
        data,
        seeds,
        tuple(sorted(recalls)),
        layout.get("night", True),
        budget,
        str(spec.get("note") or ""),
    )
