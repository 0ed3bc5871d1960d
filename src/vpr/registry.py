"""Name -> builder registries: one per kind of choice (backbone, aggregator, loss, ...).

A builder's *positional* parameters are supplied by the code (input channels, model parameters,
the optimizer); its *keyword-only* parameters are the settings a user may put in params.yaml.
So the settings a name accepts, and their defaults, are read from the builder's signature:
adding an entry is writing one small function.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from vpr.errors import ConfigError


class Registry:
    def __init__(self, kind: str, section: str):
        self.kind = kind          # e.g. "loss"
        self.section = section    # params.yaml section holding per-name settings, e.g. "losses"
        self._builders: dict[str, Callable] = {}

    def register(self, name: str | None = None, paper: str = "") -> Callable:
        def deco(fn: Callable) -> Callable:
            key = name or fn.__name__.strip("_")
            if key in self._builders:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            fn.paper = paper
            self._builders[key] = fn
            return fn
        return deco

    def names(self) -> list[str]:
        return list(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str, key: str | None = None) -> Callable:
        if name not in self._builders:
            raise ConfigError(f"{key or self.kind}: unknown {self.kind} '{name}'; choose one of: "
                              f"{', '.join(self.names())}")
        return self._builders[name]

    def settings(self, name: str) -> dict[str, Any]:
        """Settable keyword-only parameters of ``name`` with their defaults."""
        sig = inspect.signature(self.get(name))
        return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}

    def check(self, name: str, settings: dict | None, key: str | None = None) -> dict:
        """Validate ``settings`` for ``name`` (unknown keys, wrong types) and merge in the defaults."""
        defaults = self.settings(name)
        settings = dict(settings or {})
        where = key or f"{self.section}.{name}"
        for k, v in settings.items():
            if k not in defaults:
                allowed = ", ".join(defaults) or "none"
                raise ConfigError(f"{where}.{k}: unknown setting for {self.kind} '{name}'; allowed: {allowed}")
            check_type(f"{where}.{k}", v, defaults[k])
        return {**defaults, **settings}

    def build(self, name: str, *args, settings: dict | None = None, key: str | None = None):
        return self.get(name, key)(*args, **self.check(name, settings, key))

    def describe(self) -> list[dict]:
        """Rows for documentation: name, summary, settings, paper."""
        rows = []
        for name, fn in self._builders.items():
            doc = (inspect.getdoc(fn) or "").split("\n")[0]
            rows.append(dict(name=name, what=doc, settings=self.settings(name), paper=getattr(fn, "paper", "")))
        return rows


def check_type(key: str, value: Any, default: Any) -> None:
    """Values must have the type of the default (ints pass for floats; a None default accepts anything)."""
    if default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            ok = value.is_integer()
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{key}: expected {type(default).__name__} like {default!r}, got {value!r}")


def require(condition: bool, key: str, message: str) -> None:
    """One-line ConfigError for an impossible value."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def with_defaults(section: str, values, defaults: dict) -> dict:
    """A params section merged over its defaults; an unknown key is a one-line ConfigError."""
    values = dict(values or {})
    for k in values:
        if k not in defaults:
            raise ConfigError(f"{section}.{k}: unknown key; allowed: {', '.join(defaults)}")
    return {**defaults, **values}
