"""params.yaml -> validated values, by the schema (pure data: no torch, no model is built to check a value).

Every key is checked (type, range; null only where the schema documents it), unknown keys and names get
one line naming the key (with a suggestion for a near-miss), and a stage may validate only what it reads.
"""

from __future__ import annotations

import difflib

from vpr.config import sections as S
from vpr.config.catalog import KINDS, TOP_LEVEL_CHOICES
from vpr.config.settings import Setting, Validated, number
from vpr.errors import ConfigError

SEED = number(0, "training randomness (initialisation, batches, augmentation) and nothing else", 0)
TOP_LEVEL = (
    "seed",
    *TOP_LEVEL_CHOICES,
    "datasets",
    *S.SECTIONS,
    "data",
    "data_profiles",
    "augment",
    *(k.section for k in KINDS.values() if k.section not in ("augment", "eval")),
)


def unknown(key: str, value, allowed) -> ConfigError:
    """One line for an unknown key or name, with the closest allowed one when there is a near-miss."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"{key}: unknown {'key' if key.endswith(str(value)) else 'name'} '{value}'{hint} "
        f"(allowed: {', '.join(map(str, allowed))})"
    )


def check_settings(prefix: str, schema: dict[str, Setting], given, cross=None) -> Validated:
    """A mapping of settings checked key by key against ``schema``, defaults filled in."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{prefix}: expected a mapping of settings, got {given!r}")
    for k in given:
        if k not in schema:
            raise unknown(f"{prefix}.{k}", k, schema)
    out = Validated(
        (k, s.validate(f"{prefix}.{k}", given[k]) if k in given else s.default)
        for k, s in schema.items()
    )
    problem = cross(out) if cross else None
    if problem:
        key, message = problem if isinstance(problem, tuple) else (prefix, problem)
        raise ConfigError(f"{key}: {message}")
    return out


def entry_settings(kind: str, name: str, given, prefix: str | None = None) -> Validated:
    """The settings of entry ``name`` of a choice ``kind`` (e.g. loss circle), checked, defaults filled in."""
    k = KINDS[kind]
    if name not in k.entries:
        raise unknown(k.key, name, k.entries)
    return _entry_settings(k, name, given, prefix)


def _entry_settings(k, name: str, given, prefix: str | None = None) -> Validated:
    entry = k.entries[name]
    return check_settings(prefix or f"{k.section}.{name}", entry.settings, given, entry.check)


def _choice(raw: dict, kind: str, name) -> Validated:
    """Check the choice ``kind`` named ``name`` and every entry listed in its section, each once; the chosen
    entry's settings."""
    k = KINDS[kind]
    if not isinstance(name, str):
        raise ConfigError(f"{k.key}: expected a name, one of: {', '.join(k.entries)}; got {name!r}")
    section = raw.get(k.section) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{k.section}: expected a mapping of {kind} name -> settings")
    listed = {}
    for entry, given in section.items():
        if entry not in k.entries:
            raise unknown(f"{k.section}.{entry}", entry, k.entries)
        listed[entry] = _entry_settings(k, entry, given)
    return listed[name] if name in listed else entry_settings(kind, name, None)


def check_augment(items, key: str = "augment") -> list[tuple[str, Validated]]:
    """An augmentation list: [{name: ..., setting: value}, ...] -> [(name, settings with defaults)]; an item
    already validated, a (name, Validated settings) pair, is kept as it is."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(
            f"{key}: expected a list of {{name: ..., setting: value}} items, got {items!r}"
        )
    out = []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Validated):
            out.append(item)
            continue
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(
                f"{key}[{i}]: expected a mapping with a 'name' key, e.g. {{name: randaugment}}, "
                f"got {item!r}"
            )
        settings = {k: v for k, v in item.items() if k != "name"}
        if item["name"] not in KINDS["augmentation"].entries:
            raise unknown(f"{key}[{i}].name", item["name"], KINDS["augmentation"].entries)
        out.append(
            (
                item["name"],
                _entry_settings(KINDS["augmentation"], item["name"], settings, f"{key}[{i}]"),
            )
        )
    return out
