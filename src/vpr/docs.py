"""The README's registry tables, generated from the registries themselves (`python -m vpr.docs` rewrites them).

A test checks the README is in sync, so adding a registry entry without documenting it fails CI.
"""
from __future__ import annotations

import sys
from pathlib import Path

START, END = "<!-- registry-tables:start -->", "<!-- registry-tables:end -->"
RECIPES_START, RECIPES_END = "<!-- recipe-tables:start -->", "<!-- recipe-tables:end -->"


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def registry_tables() -> str:
    from vpr.config import _registries
    from vpr.data.transforms import AUGMENTATIONS
    from vpr.eval.knn import INDEXES
    from vpr.train.methods import METHODS
    registries = {**_registries(), "method": METHODS, "augmentation": AUGMENTATIONS, "index": INDEXES}
    parts = []
    for kind, registry in registries.items():
        key = {"augmentation": "augment: [{name: ...}]", "method": "train.method: <name>",
               "index": "eval.index: <name>"}.get(kind, f"{kind}: <name>")
        parts.append(f"#### {kind} — `{key}`, settings in `{registry.section}" + (".<name>" if kind == "index" else "") + "`\n")
        parts.append("| name | what it is | settings (defaults) | reference |")
        parts.append("|---|---|---|---|")
        for row in registry.describe():
            settings = ", ".join(f"`{k}: {_value(v)}`" for k, v in row["settings"].items()) or "—"
            parts.append(f"| `{row['name']}` | {row['what']} | {settings} | {row['paper'] or '—'} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def recipe_tables() -> str:
    from vpr.recipes import RECIPES, table
    return "\n".join(table(name) for name in RECIPES)


def _replace(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def update_readme(path: str | Path = "README.md") -> bool:
    """Rewrite the generated sections of the README (registry and recipe tables); True if it changed."""
    path = Path(path)
    text = path.read_text()
    new = _replace(text, START, END, registry_tables())
    new = _replace(new, RECIPES_START, RECIPES_END, recipe_tables())
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print("README.md registry and recipe tables " + ("updated" if changed else "already up to date"))
