"""The building blocks of the params schema: one :class:`Setting` per key (type, default, range, one-line doc)
and one :class:`Entry` per name a choice can take (e.g. loss ``circle``: its doc, paper and settings).

Pure Python: validating params imports neither torch nor anything that builds a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vpr.errors import ConfigError

_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


@dataclass(frozen=True)
class Setting:
    default: Any
    doc: str
    kind: type = None  # bool | int | float | str | list | dict; None: the default's type
    nullable: bool = False  # null is a documented value (e.g. "null = native size")
    check: Callable[[Any], str | None] | None = (
        None  # returns what is wrong with a (well-typed) value
    )

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    def validate(self, key: str, value):
        """The value, checked (type, then range); a one-line ConfigError naming ``key`` otherwise."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{key}: expected {_TYPE_NAMES[self.type]}, got null")
        if not _is(value, self.type):
            example = f" like {self.default!r}" if self.default is not None else ""
            null = " or null" if self.nullable else ""
            raise ConfigError(
                f"{key}: expected {_TYPE_NAMES[self.type]}{null}{example}, got {value!r}"
            )
        if self.type is float:
            value = float(value)
        elif self.type is int:
            value = int(value)
        problem = self.check(value) if self.check else None
        if problem:
            raise ConfigError(f"{key}: {problem}")
        return value


def _is(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:  # 5.0 passes for 5 (and is stored as 5)
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


class Validated(dict):
    """Settings that passed the schema: every value checked, defaults filled in. Validation happens once, where a
    value enters (vpr.config for params.yaml); what receives Validated settings (a registry's build, the synthetic
    city, a dataset fetch) takes them as they are, and checks only the plain mappings a library caller writes."""


@dataclass(frozen=True)
class Entry:
    """A name a choice can take: one-line doc, paper, and its settings (``losses.<name>.<key>``)."""

    doc: str
    paper: str = ""
    settings: dict = field(default_factory=dict)
    check: Callable[[dict], str | None] | None = None  # cross-setting check of the merged settings


# --- constructors: the schema reads like a table ---------------------------------------------------------


def number(
    default, doc, lo=None, hi=None, *, lo_open=False, hi_open=False, integer=None, nullable=False
):
    """A number in [lo, hi] (open ends with lo_open / hi_open); int if the default is one (or ``integer``)."""
    kind = (
        int
        if (
            integer
            if integer is not None
            else isinstance(default, int) and not isinstance(default, bool)
        )
        else float
    )

    def check(v):
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '>='} {lo}, got {v}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '<='} {hi}, got {v}"
        return None

    return Setting(default, doc, kind, nullable, check)


def positive(default, doc, nullable=False):
    return number(default, doc, 0, lo_open=True, nullable=nullable)


def probability(default, doc):
    return number(default, doc, 0.0, 1.0)


def flag(default: bool, doc: str):
    return Setting(default, doc, bool)


def one_of(default, doc, options, nullable=False):
    options = tuple(options)
    return Setting(
        default,
        doc,
        str,
        nullable,
        lambda v: None if v in options else f"'{v}' is not one of: {', '.join(options)}",
    )


def text(default, doc, nullable=False, check=None):
    return Setting(default, doc, str, nullable, check)


def size(default, doc, nullable=False, minimum=16):
    """[height, width] in pixels."""

    def check(v):
        ok = len(v) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= minimum for x in v
        )
        return (
            None
            if ok
            else f"must be [height, width] in pixels (each >= {minimum}), got {list(v)!r}"
        )

    return Setting(default, doc, list, nullable, check)


def interval(default, doc, lo=0.0, hi=math.inf):
    """[min, max] with lo <= min <= max <= hi."""

    def check(v):
        ok = len(v) == 2 and all(_is(x, float) for x in v) and lo <= v[0] <= v[1] <= hi
        return (
            None if ok else f"must be [min, max] with {lo} <= min <= max <= {hi}, got {list(v)!r}"
        )

    return Setting(default, doc, list, False, check)


def items(default, doc, each: Callable[[Any], bool], what: str, nullable=False, nonempty=False):
    """A list whose every item passes ``each`` (``what`` says what an item must be)."""

    def check(v):
        if nonempty and not v:
            return f"must not be empty: a list of {what}"
        bad = [x for x in v if not each(x)]
        return f"every item must be {what}, got {bad[0]!r}" if bad else None

    return Setting(default, doc, list, nullable, check)


def is_int(x, lo=None) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and (lo is None or x >= lo)


def is_number(x) -> bool:
    return _is(x, float)


def mapping(default, doc, check=None):
    return Setting(default, doc, dict, False, check)
