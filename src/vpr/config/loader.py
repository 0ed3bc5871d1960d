"""params.yaml -> validated values, by the schema (pure data: no torch, no model is built to check a value).

Every key is checked (type, range; null only where the schema documents it), unknown keys and names get
one line naming the key (with a suggestion for a near-miss), and a stage may validate only what it reads.
"""
from __future__ import annotations

import difflib

from vpr.config import sections as S
from vpr.config.catalog import KINDS, TOP_LEVEL_CHOICES
from vpr.config.settings import Setting, number
from vpr.errors import ConfigError

SEED = number(0, "training randomness (initialisation, batches, augmentation) and nothing else", 0)
TOP_LEVEL = ("seed", *TOP_LEVEL_CHOICES, "datasets", *S.SECTIONS, "data", "data_profiles", "augment",
             *(k.section for k in KINDS.values() if k.section not in ("augment", "eval")))


def unknown(key: str, value, allowed) -> ConfigError:
    """One line for an unknown key or name, with the closest allowed one when there is a near-miss."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"{key}: unknown {'key' if key.endswith(str(value)) else 'name'} '{value}'{hint} "
                       f"(allowed: {', '.join(map(str, allowed))})")


def check_settings(prefix: str, schema: dict[str, Setting], given, cross=None) -> dict:
    """A mapping of settings checked key by key against ``schema``, defaults filled in."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{prefix}: expected a mapping of settings, got {given!r}")
    for k in given:
        if k not in schema:
            raise unknown(f"{prefix}.{k}", k, schema)
    out = {k: s.validate(f"{prefix}.{k}", given[k]) if k in given else s.default for k, s in schema.items()}
    problem = cross(out) if cross else None
    if problem:
        key, message = problem if isinstance(problem, tuple) else (prefix, problem)
        raise ConfigError(f"{key}: {message}")
    return out


def entry_settings(kind: str, name: str, given, prefix: str | None = None) -> dict:
    """The settings of entry ``name`` of a choice ``kind`` (e.g. loss circle), checked, defaults filled in."""
    k = KINDS[kind]
    if name not in k.entries:
        raise unknown(k.key, name, k.entries)
    entry = k.entries[name]
    return check_settings(prefix or f"{k.section}.{name}", entry.settings, given, entry.check)


def _choice(raw: dict, kind: str, name) -> dict:
    """Check the choice ``kind`` named ``name`` and every entry listed in its section; the chosen entry's settings."""
    k = KINDS[kind]
    if not isinstance(name, str):
        raise ConfigError(f"{k.key}: expected a name, one of: {', '.join(k.entries)}; got {name!r}")
    section = raw.get(k.section) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{k.section}: expected a mapping of {kind} name -> settings")
    for listed, given in section.items():
        if listed not in k.entries:
            raise unknown(f"{k.section}.{listed}", listed, k.entries)
        entry_settings(kind, listed, given)
    return entry_settings(kind, name, section.get(name))


def check_augment(items, key: str = "augment") -> list[tuple[str, dict]]:
    """An augmentation list: [{name: ..., setting: value}, ...] -> [(name, settings with defaults)]."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{key}: expected a list of {{name: ..., setting: value}} items, got {items!r}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{key}[{i}]: expected a mapping with a 'name' key, e.g. {{name: randaugment}}, "
                              f"got {item!r}")
        settings = {k: v for k, v in item.items() if k != "name"}
        if item["name"] not in KINDS["augmentation"].entries:
            raise unknown(f"{key}[{i}].name", item["name"], KINDS["augmentation"].entries)
        out.append((item["name"], entry_settings("augmentation", item["name"], settings, f"{key}[{i}]")))
    return out
