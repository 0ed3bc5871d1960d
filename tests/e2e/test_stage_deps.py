"""dvc.yaml is honest: every stage depends on every module its script can import (lazy imports included) and
on exactly the params it validates, and the light stages never reach the model zoo. (That they never import
torch at run time is checked by the end-to-end pipeline test: tests/e2e/forbid_torch.)"""

import ast

import pytest
import yaml

from tests.helpers import ROOT
from vpr.config import READS

SRC = ROOT / "src"
LIGHT = (
    "fetch",
    "build_gt",
    "evaluate",
    "recall_table",
    "visualize",
    "report",
)  # must start without torch


def _module_file(name: str):
    """The file of module ``name`` under src/ or stages/, or None (a third-party or stdlib module)."""
    parts = name.split(".")
    for base in (SRC, ROOT / "stages"):
        for candidate in (
            base.joinpath(*parts).with_suffix(".py"),
            base.joinpath(*parts, "__init__.py"),
        ):
            if candidate.is_file():
                return candidate
    return None


def _imported_names(path) -> set[str]:
    """Every module a file may import, wherever the import statement is (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = (
        ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if SRC in path.parents else ""
    )
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            names |= {
                f"{base}.{alias.name}" for alias in node.names
            }  # a submodule, or just an attribute
    return names


def import_closure(script) -> tuple[set, set]:
    """(files of ours, top-level names of third-party modules) reachable from ``script``."""
    ours, others, todo = set(), set(), [script]
    while todo:
        path = todo.pop()
        if path in ours:
            continue
        ours.add(path)
        for name in _imported_names(path):
            parts = name.split(".")
            found = False
            for i in range(1, len(parts) + 1):  # a package's __init__ runs before its submodules
                f = _module_file(".".join(parts[:i]))
                if f is not None:
                    todo.append(f)
                    found = True
            if not found:
                others.add(parts[0])
    return ours, others


def _stages():
    with open(ROOT / "dvc.yaml") as fh:
        stages = yaml.safe_load(fh)["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _dep_paths(stage) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]


@pytest.mark.parametrize("name", list(READS))
def test_every_module_a_stage_can_import_is_in_its_deps(name):
    stage = _stages()[name]
    deps = _dep_paths(stage)
    ours, _ = import_closure(ROOT / "stages" / f"{name}.py")
    missing = sorted(
        str(p.relative_to(ROOT))
        for p in ours
        if not any(
            str(p.relative_to(ROOT)) == d
            or str(p.relative_to(ROOT)).startswith(d.rstrip("/") + "/")
            for d in deps
        )
    )
    assert not missing, f"dvc.yaml stage {name}: add to deps: {missing}"


@pytest.mark.parametrize("name", LIGHT)
def test_light_stages_never_reach_the_model_zoo_or_training(name):
    ours, others = import_closure(ROOT / "stages" / f"{name}.py")
    assert not others & {"pytorch_metric_learning", "timm", "efficientnet_lite_pytorch"}, sorted(
        others
    )
    heavy = [
        str(p)
        for p in ours
        if SRC in p.parents and p.relative_to(SRC).parts[1] in ("models", "train")
    ]
    assert not heavy


def _normalised(params) -> set[str]:
    out = set()
    for p in params:
        key = p if isinstance(p, str) else next(iter(p))
        out.add("*" if key == "params.yaml" else key.replace("${item}", "*"))
    return out


@pytest.mark.parametrize("name", list(READS))
def test_a_stage_depends_on_exactly_the_params_it_reads(name):
    assert _normalised(_stages()[name]["params"]) == set(READS[name])


def test_the_train_stage_params_are_the_one_declaration_of_the_training_params():
    """dvc.yaml's train params, the config's READS and the run fingerprint all come from TRAINING_PARAMS."""
    from vpr.config import TRAINING_PARAMS

    assert READS["train"] is TRAINING_PARAMS
    assert [
        p if isinstance(p, str) else next(iter(p)) for p in _stages()["train"]["params"]
    ] == list(TRAINING_PARAMS)
