"""params.yaml as DVC reads and writes it: values for ``dvc exp run -S``, and YAML read back with the types DVC meant.

DVC writes YAML 1.2 (ruamel): a float such as the learning rate 1e-05 is written ``1e-05``, which PyYAML's
YAML 1.1 resolver reads back as the *string* '1e-05'. ``Loader`` resolves floats as YAML 1.2 does.
"""

from __future__ import annotations

import re

import yaml

from vpr.errors import ConfigError

_FLOAT_12 = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's float forms (an exponent without a dot)."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def load(stream):
    """Like ``yaml.safe_load`` (text or an open file), with ``Loader``'s floats."""
    return yaml.load(stream, Loader=Loader)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./]*\Z")
_WORDS = {"null", "true", "false", "nan", "inf", "none", "yes", "no", "on", "off"}


def hydra_value(v) -> str:
    """A value in the override grammar of `dvc exp run -S` (Hydra's): mappings with bare keys, strings quoted
    unless plain words or paths."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        if _PLAIN.match(v) and v.lower() not in _WORDS:
            return v
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot pass {v!r} to dvc exp run -S")
