"""The data side of params.yaml: ``datasets`` (where each comes from), ``data`` (which folder plays which role,
night rules) and ``data_profiles`` (ready-made data sections). Pure checks: nothing is read from disk."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import urlparse

from vpr.config import sections as S
from vpr.errors import ConfigError, require


def check_dataset(name: str, spec) -> dict:
    """``datasets.<name>``: keys a source does not use are allowed (switching the source keeps them)."""
    from vpr.config.loader import check_settings

    key = f"datasets.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{key}: expected a mapping like {{source: url, url: ..., sha256: ...}}, got {spec!r}"
        )
    s = check_settings(key, S.DATASET, spec)
    if s["source"] == "url":
        require(
            bool(s["url"]) and urlparse(s["url"]).scheme in ("http", "https"),
            f"{key}.url",
            f"source 'url' needs an http(s) address of a zip or tar archive, got {s['url']!r}",
        )
        require(
            s["sha256"] is None or re.fullmatch(r"[0-9a-fA-F]{64}", s["sha256"]) is not None,
            f"{key}.sha256",
            f"expected 64 hex digits or null, got {s['sha256']!r}",
        )
        require(
            s["root"] is None or not (posixpath.isabs(s["root"]) or ".." in s["root"].split("/")),
            f"{key}.root",
            f"must be a folder inside the archive (relative, no '..'), got {s['root']!r}",
        )
    require(
        s["source"] != "path" or bool(s["path"]),
        f"{key}.path",
        "source 'path' needs the folder you downloaded, e.g. path: /data/sf_xs",
    )
    return s


def check_datasets(datasets) -> dict:
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(
            "datasets: expected at least one dataset, e.g. {synth: {source: synthetic}}"
        )
    return {name: check_dataset(name, spec) for name, spec in datasets.items()}


def check_night(key: str, spec) -> dict:
    """``data.night.<set>``: which queries are night ones; defaults filled in."""
    from vpr.config.loader import check_settings

    if not isinstance(spec, dict):
        raise ConfigError(
            f"{key}: expected a mapping like {{name: tokyo_night, rule: brightness, max_brightness: 80}}"
        )
    out = check_settings(key, S.NIGHT, spec)
    require(
        out["rule"] != "list" or out["list"] is not None,
        f"{key}.list",
        f"rule 'list' needs a list file, e.g. {S.NIGHT_LISTS_DIR}/tokyo_night.txt (one query name per line)",
    )
    return out


def check_data(data, datasets: dict, key: str = "data") -> dict:
    """The ``data`` section: every role a folder under data/raw of a fetched dataset."""
    from vpr.config.loader import check_settings

    d = check_settings(key, S.DATA, data)
    if not d["test"]:
        raise ConfigError(
            f"{key}.test: the list of evaluation sets is empty; name at least one, "
            "e.g. {synth_test: synth/test}"
        )
    fetched = list(d["fetch"])
    require(
        len(set(fetched)) == len(fetched),
        f"{key}.fetch",
        f"expected a list of distinct dataset names, got {fetched!r}",
    )
    for name in fetched:
        require(
            name in datasets, f"{key}.fetch", f"'{name}' is not in datasets ({', '.join(datasets)})"
        )
    roles = (
        [(f"{key}.train", d["train"]), (f"{key}.val", d["val"])]
        + [(f"{key}.test.{k}", v) for k, v in d["test"].items()]
        + [(f"{key}.{k}", d[k]) for k in ("mining", "target") if d[k] is not None]
        + [(f"{key}.extra_train[{i}]", v) for i, v in enumerate(d["extra_train"])]
    )
    for role, folder in roles:
        if not isinstance(folder, str) or folder.split("/")[0] not in datasets:
            raise ConfigError(
                f"{role}: '{folder}' must be a folder under data/raw starting with a dataset name "
                f"from 'datasets' ({', '.join(datasets)})"
            )
        require(
            folder.split("/")[0] in fetched,
            role,
            f"'{folder}' is in dataset '{folder.split('/')[0]}', which {key}.fetch does not list; add it there",
        )
    for name in d["test"]:
        require(
            name not in ("train", "val") and name.replace("_", "").isalnum(),
            f"{key}.test.{name}",
            "eval set names must be letters, digits and '_' (and not 'train' or 'val')",
        )
    for name in d["night"]:
        require(
            name in d["test"], f"{key}.night.{name}", f"no evaluation set '{name}' in {key}.test"
        )
    # a new mapping: the caller's night rules stay as written (validation fills defaults in its own view)
    d["night"] = {
        name: check_night(f"{key}.night.{name}", spec) for name, spec in d["night"].items()
    }
    return d


def check_data_profiles(profiles, datasets: dict) -> dict:
    """``data_profiles.<name>``: ready-made ``data`` sections (``dvc exp run -S 'data=${data_profiles.<name>}'``)."""
    if profiles is None:
        return {}
    if not isinstance(profiles, dict):
        raise ConfigError("data_profiles: expected a mapping of profile name -> data section")
    out = {}
    for name, profile in profiles.items():
        key = f"data_profiles.{name}"
        missing = [
            k
            for k in ("fetch", "train", "val", "test")
            if not isinstance(profile, dict) or k not in profile
        ]
        require(
            not missing,
            key,
            f"a profile replaces the whole data section: give {', '.join(missing)} too",
        )
        out[name] = check_data(profile, datasets, key)
    return out
