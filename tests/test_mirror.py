"""The tests' own layout: tests/<sub>/ mirrors src/vpr/<sub>/ (tests/e2e/ apart: the DVC pipeline and the stage
scripts end to end; tests of src/vpr's top-level modules stay in tests/), shared helpers live in tests/helpers.py
and fixtures in tests/conftest.py, and no test module imports another."""

import ast

from tests.helpers import ROOT

TESTS = ROOT / "tests"
PACKAGE = ROOT / "src" / "vpr"
APART = "e2e"  # end to end: mirrors no subpackage


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") or part == "conftest" for part in dotted.split("."))


def _imported_test_modules(path):
    """The test modules (or conftest) ``path`` imports, as written there, with their line numbers."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if _is_test_module(module.lstrip(".")):
                found.append((node.lineno, module))
            elif (
                node.level or (node.module or "").split(".")[0] == "tests"
            ):  # from tests(.x) / . import test_y
                found += [
                    (node.lineno, module + ("" if module.endswith(".") else ".") + a.name)
                    for a in node.names
                    if _is_test_module(a.name)
                ]
    return found


def test_no_test_module_imports_another_test_module():
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name} (shared code belongs in tests/helpers.py, "
        f"fixtures in tests/conftest.py)"
        for path in sorted(TESTS.rglob("*.py"))
        if "__pycache__" not in path.parts
        for line, name in _imported_test_modules(path)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_tests_folder_mirrors_a_vpr_subpackage_or_is_end_to_end():
    wrong = []
    for folder in sorted(p for p in TESTS.rglob("*") if p.is_dir()):
        rel = folder.relative_to(TESTS)
        if "__pycache__" in rel.parts or rel.parts[0].startswith("."):
            continue
        if rel.parts[0] == APART:
            if len(rel.parts) == 1 and not (folder / "__init__.py").is_file():
                wrong.append(f"tests/{rel}: no __init__.py")
            continue  # tests/e2e/forbid_torch and the like: support files of the end-to-end runs
        if not (PACKAGE.joinpath(*rel.parts) / "__init__.py").is_file():
            wrong.append(
                f"tests/{rel}: src/vpr/{rel.as_posix()} is no package (put end-to-end tests in tests/{APART})"
            )
        if not (folder / "__init__.py").is_file():
            wrong.append(
                f"tests/{rel}: no __init__.py (a module name must be unique across tests/)"
            )
    assert not wrong, "\n".join(wrong)
