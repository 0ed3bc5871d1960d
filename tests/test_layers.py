"""The library's layers: a module imports only from its own layer or the ones below (lazy imports inside
functions count too), so each part can be read, tested and reused without the parts built on top of it.

    base (errors, io, ...)  <  config, recipes  <  registry  <  data, models  <  train, eval
                            <  localize, viz  <  compare, suites, docs

train and eval are peers that do not import each other, except the eval modules listed in TRAIN_USES_EVAL.
"""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

SRC = ROOT / "src"

LAYERS = {
    "vpr": 0,
    "compat": 0,
    "errors": 0,
    "io": 0,
    "progress": 0,
    "device": 0,
    "environment": 0,
    "dvc_params": 0,  # params.yaml as DVC writes and reads it
    "config": 1,
    "recipes": 1,  # params schema and ready-made params: pure data
    "registry": 2,  # name -> builder, names from the schema
    "data": 3,
    "models": 3,  # files, ground truth, loaders; networks and checkpoints
    "train": 4,
    "eval": 4,  # training; extraction, retrieval, recall, comparisons
    "localize": 5,
    "viz": 5,  # new photos; pictures, charts and pages
    "compare": 6,
    "suites": 6,
    "docs": 6,  # commands built on everything below
}
# Peers that must not import each other (same layer).
SEPARATE = {("train", "eval"), ("eval", "train")}
# What training uses of evaluation: the image preparation (validation prepares images as extraction does),
# descriptor computation (triplet mining, validation) and the validation itself. Shrink this list, never grow it.
TRAIN_USES_EVAL = {"vpr.eval.prepare", "vpr.eval.extract", "vpr.eval.validate"}


def _modules():
    for path in sorted(SRC.joinpath("vpr").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or path.joinpath("__init__.py").is_file()


def _imports(module: str, path: Path):
    """(line, imported module) for every import of a vpr module in the file, wherever it is (``from vpr.eval
    import knn``: vpr.eval.knn)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [
                f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names
            ]
        else:
            continue
        yield from (
            (node.lineno, n) for n in dict.fromkeys(names) if n == "vpr" or n.startswith("vpr.")
        )


def _part(module: str) -> str:
    """'vpr.eval.knn' -> 'eval'; 'vpr' -> 'vpr'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vpr"


def _allowed(importer: str, imported: str) -> bool:
    a, b = _part(importer), _part(imported)
    if a == b or b == "vpr":
        return True
    if (a, b) in SEPARATE:
        return a == "train" and any(
            imported == m or imported.startswith(m + ".") for m in TRAIN_USES_EVAL
        )
    return LAYERS.get(b, len(LAYERS)) <= LAYERS[a]


def test_every_part_of_the_library_has_a_layer():
    unknown = sorted({_part(m) for m, _ in _modules()} - set(LAYERS))
    assert not unknown, f"give these parts of src/vpr a layer in tests/test_layers.py: {unknown}"


@pytest.mark.parametrize(
    "module,path", list(_modules()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_no_import_runs_up_the_layers(module, path):
    if _part(module) not in LAYERS:
        pytest.skip("no layer (the test above names it)")
    wrong = [
        f"line {line}: {name} (layer of {_part(module)}: {LAYERS[_part(module)]}, of {_part(name)}: "
        f"{LAYERS.get(_part(name))})"
        for line, name in _imports(module, path)
        if not _allowed(module, name)
    ]
    assert not wrong, (
        f"{path.relative_to(SRC.parent)} imports from a higher layer or a separate peer: {wrong}"
    )


def test_the_torchvision_shim_is_installed_in_one_place():
    """vpr/__init__ installs vpr.compat's import hook; every other module imports torchvision plainly."""
    users = sorted(
        m for m, path in _modules() for _, name in _imports(m, path) if name == "vpr.compat"
    )
    assert users == ["vpr"]


def test_the_rules_catch_an_upward_import():
    assert not _allowed("vpr.data.samplers", "vpr.train.addons.proxy_head")
    assert not _allowed("vpr.models.network", "vpr.eval.extract")
    assert not _allowed("vpr.eval.extract_set", "vpr.train.checkpoint")
    assert not _allowed("vpr.train.loop", "vpr.eval.knn")
    assert _allowed("vpr.train.session", "vpr.eval.validate") and _allowed(
        "vpr.eval.extract", "vpr.models.checkpoint"
    )
