"""params.yaml, validated by one schema (vpr.config.sections, vpr.config.catalog): types, defaults, ranges and a
one-line doc per key, declared once. Pure data: validation imports no torch and builds nothing.

    cfg = load_config("params.yaml", stage="evaluate")   # validates only what the evaluate stage reads
    cfg.eval.recall_values, cfg.settings("loss"), cfg.raw["loss"]
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from vpr import dvc_params
from vpr.config import sections as S
from vpr.config.catalog import KINDS, TOP_LEVEL_CHOICES
from vpr.config.data import check_data, check_data_profiles, check_datasets
from vpr.config.loader import (
    SEED,
    TOP_LEVEL,
    _choice,
    check_augment,
    check_settings,
    entry_settings,
    unknown,
)
from vpr.config.settings import Validated
from vpr.errors import ConfigError

__all__ = [
    "load_config",
    "load_params",
    "missing_keys",
    "validate",
    "Config",
    "READS",
    "KINDS",
    "TRAINING_PARAMS",
]

# The params training reads, declared once: the train stage's params in dvc.yaml (a test keeps the two equal),
# and, the top-level ones, what a run's fingerprint hashes (vpr.train.setup.run_fingerprint; the extract keys
# enter it as the validation's image preparation).
TRAINING_PARAMS = (
    "seed",
    *TOP_LEVEL_CHOICES,
    "model",
    *(KINDS[k].section for k in TOP_LEVEL_CHOICES),
    "augment",
    "train",
    "methods",
    "domain_adaptation",
    "self_supervised",
    "extract.batch_size",
    "extract.resize",
    "extract.resize_side",
)
READS = {
    "fetch": ("datasets.*", "synthetic", "data.fetch"),
    "build_gt": ("data", "gt", "datasets"),
    "train": TRAINING_PARAMS,
    "extract": ("extract",),
    "evaluate": ("eval",),
    "recall_table": ("eval.recall_values", "data.test"),
    "visualize": ("viz",),
    "report": ("*",),
}


class Section(Validated):
    """A validated section: its settings as attributes (``cfg.train.epochs``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Config:
    def __init__(self, raw: dict, values: dict):
        self.raw, self.values = raw, values

    def __getattr__(self, name: str) -> Any:
        if name in ("raw", "values"):
            raise AttributeError(name)
        if name in self.values:
            return self.values[name]
        raise AttributeError(
            f"params section '{name}' was not validated for this stage (vpr.config.READS)"
        )

    def settings(self, kind: str) -> dict:
        """Validated settings of the chosen entry of ``kind`` (e.g. 'loss'), defaults filled in."""
        return self.values["choices"][kind]

    @property
    def seed(self) -> int:
        return self.values["seed"]


def _wanted(reads) -> set[str]:
    tops = {r.split(".")[0] for r in (reads or ("*",))}
    return set(TOP_LEVEL) if "*" in tops else tops | ({"datasets"} if "data" in tops else set())


def validate(raw: dict, reads=None) -> Config:
    """Check params (all of them, or the top-level keys ``reads`` names); return the validated view."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise unknown(key, key, sorted(TOP_LEVEL))
    want = _wanted(reads)
    values: dict = {"choices": {}}
    values["seed"] = SEED.validate("seed", raw.get("seed", 0))
    for kind in TOP_LEVEL_CHOICES:
        if kind in want or KINDS[kind].section in want:
            values["choices"][kind] = _choice(raw, kind, raw.get(kind, KINDS[kind].default))
    indexes = KINDS["index"].entries
    for name, (schema, cross) in S.SECTIONS.items():
        if name in want:
            given = raw.get(name)
            if name == "eval" and isinstance(
                given, dict
            ):  # eval.flat / ivf / hnsw: the index entries' settings
                given = {k: v for k, v in given.items() if k not in indexes}
            values[name] = Section(check_settings(name, schema, given, cross))
    if "eval" in want:
        values["eval"].update(_eval_indexes(raw.get("eval") or {}))
        values["choices"]["index"] = values["eval"][values["eval"]["index"]]
    if "train" in want or "methods" in want:
        values["choices"]["method"] = _choice(
            raw, "method", (raw.get("train") or {}).get("method", "places")
        )
    if "augment" in want:
        values["augment"] = check_augment(raw.get("augment"))
    if "self_supervised" in want:
        ssl = values["self_supervised"]
        ssl["view_augment"] = check_augment(ssl["view_augment"], "self_supervised.view_augment")
    if want & {"datasets", "data", "data_profiles"}:
        values["datasets"] = check_datasets(raw.get("datasets"))
    if "data" in want:
        values["data"] = Section(check_data(raw.get("data"), values["datasets"]))
    if "data_profiles" in want:
        values["data_profiles"] = check_data_profiles(raw.get("data_profiles"), values["datasets"])
    return Config(raw, values)


def _eval_indexes(section: dict) -> dict:
    """The eval section's per-index settings (eval.flat, eval.ivf, eval.hnsw), each checked."""
    index = section.get("index", "flat")
    if index not in KINDS["index"].entries:
        raise unknown("eval.index", index, KINDS["index"].entries)
    return {
        name: entry_settings("index", name, section.get(name), f"eval.{name}")
        for name in KINDS["index"].entries
    }


class _UniqueKeyLoader(dvc_params.Loader):
    """YAML's safe loader that refuses a key given twice in one mapping (at any depth), where PyYAML keeps the
    last silently and DVC rejects the file: training would use a value the user did not mean."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if (
                key_node.tag == "tag:yaml.org,2002:merge"
            ):  # '<<: *defaults' is overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key (a list): the base class says what is wrong
                pass
        return super().construct_mapping(node, deep)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, line: int):
        super().__init__(f"duplicate key '{key}'")
        self.key, self.first, self.line = key, first, line


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: params file not found; run from the repository root")
    try:
        with open(path) as fh:
            raw = yaml.load(fh, Loader=_UniqueKeyLoader) or {}
    except DuplicateKey as exc:
        raise ConfigError(
            f"{path} line {exc.line}: duplicate key '{exc.key}' (first at line {exc.first}); YAML "
            f"keeps only the last one: remove one of them"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def missing_keys(raw: dict, reads) -> list[str]:
    """The keys of ``reads`` (a stage's params, e.g. ``extract.batch_size``; ``datasets.*``: the section;
    ``*``: the whole file) that ``raw`` does not have."""
    missing = []
    for key in reads:
        node = raw
        for part in key.split("."):
            if part == "*":
                break
            if not isinstance(node, dict) or part not in node:
                missing.append(key.removesuffix(".*"))
                break
            node = node[part]
    return missing


def load_config(path: str | os.PathLike = "params.yaml", stage: str | None = None) -> Config:
    """Load and validate params.yaml: everything, or what ``stage`` reads (READS).

    A key the stage reads must be in the file, as DVC requires of the params a stage lists (it refuses to run
    the stage otherwise): a stage run on its own fails the same way instead of running on defaults or crashing
    later. Settings inside a section the stage reads may be left out: they take their documented defaults."""
    raw = load_params(path)
    missing = missing_keys(raw, READS[stage]) if stage else []
    if missing:
        shown = ", ".join(f"'{k}'" for k in missing[:5]) + (
            f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        )
        one = len(missing) == 1
        raise ConfigError(
            f"{os.fspath(path)}: missing key{'' if one else 's'} {shown}: the {stage} stage reads "
            f"{'it' if one else 'them'} (its params in dvc.yaml); add {'it' if one else 'them'} "
            f"(git diff {os.fspath(path)} shows what changed)"
        )
    return validate(raw, READS[stage] if stage else None)
