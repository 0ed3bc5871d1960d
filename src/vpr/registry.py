"""Name -> builder registries, one per kind of choice (backbone, aggregator, loss, ...).

The names, their settings, defaults, ranges and docs are declared once, in the params schema
(vpr.config.catalog); a registry maps each name to the function that builds it. A builder's positional
parameters come from the code (input channels, model parameters, the optimizer), its keyword-only ones are
the entry's settings, passed already validated and complete: builders carry no defaults of their own.

Settings are validated once, when params.yaml is loaded (vpr.config): ``build`` passes those (Validated) as they
are, and checks only a plain mapping a library caller writes (defaults filled in, one-line errors).
"""

from __future__ import annotations

from collections.abc import Callable

from vpr.config.catalog import KINDS
from vpr.config.loader import entry_settings, unknown
from vpr.config.settings import Validated


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # e.g. "loss" (vpr.config.catalog.KINDS)
        self.section = KINDS[kind].section  # e.g. "losses"
        self._builders: dict[str, Callable] = {}

    def register(self, name: str | None = None) -> Callable:
        def deco(fn: Callable) -> Callable:
            key = name or fn.__name__.strip("_")
            if key in self._builders:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            if key not in KINDS[self.kind].entries:
                raise ValueError(
                    f"{self.kind} '{key}' is not declared in the params schema (vpr.config.catalog)"
                )
            self._builders[key] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        return list(KINDS[self.kind].entries)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str, key: str | None = None) -> Callable:
        if name not in self._builders:
            raise unknown(key or KINDS[self.kind].key, name, self.names())
        return self._builders[name]

    def check(self, name: str, settings: dict | None, key: str | None = None) -> dict:
        """``settings`` of entry ``name`` checked by the schema, defaults filled in, as a plain dict (for a model
        spec, which checkpoints store)."""
        return dict(entry_settings(self.kind, name, settings, key))

    def build(self, name: str, *args, settings: dict | None = None, key: str | None = None):
        """The entry built with ``settings``: Validated ones (vpr.config) as they are, a plain mapping checked."""
        builder = self.get(name, key)
        if not isinstance(settings, Validated):
            settings = entry_settings(self.kind, name, settings, key)
        return builder(*args, **settings)
