"""The README's generated tables (`python -m vpr.docs` rewrites them): every choice and every params key from
the params schema, every recipe value with its source. A test checks the README is in sync."""
from __future__ import annotations

import sys
from pathlib import Path

START, END = "<!-- registry-tables:start -->", "<!-- registry-tables:end -->"
RECIPES_START, RECIPES_END = "<!-- recipe-tables:start -->", "<!-- recipe-tables:end -->"
SECTIONS_START, SECTIONS_END = "<!-- section-tables:start -->", "<!-- section-tables:end -->"


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def registry_tables() -> str:
    """One table per kind of choice, from the params schema (vpr.config.catalog)."""
    from vpr.config.catalog import KINDS
    parts = []
    for kind, k in KINDS.items():
        key = {"augmentation": "augment: [{name: ...}]"}.get(kind, f"{k.key}: <name>")
        parts.append(f"#### {kind} — `{key}`, settings in `{k.section}" + (".<name>" if kind == "index" else "") + "`\n")
        parts.append("| name | what it is | settings (defaults) | reference |")
        parts.append("|---|---|---|---|")
        for name, entry in k.entries.items():
            settings = ", ".join(f"`{key}: {_value(s.default)}`" for key, s in entry.settings.items()) or "—"
            parts.append(f"| `{name}` | {entry.doc} | {settings} | {entry.paper or '—'} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def section_tables() -> str:
    """One table per plain params section: every key, its default (= params.yaml's value) and what it does."""
    from vpr.config.sections import SECTIONS
    parts = []
    for name, (schema, _) in SECTIONS.items():
        parts += [f"#### `{name}`\n", "| key | default | what it does |", "|---|---|---|"]
        parts += [f"| `{key}` | `{_value(s.default)}` | {s.doc} |" for key, s in schema.items()]
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
    new = _replace(new, SECTIONS_START, SECTIONS_END, section_tables())
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print("README.md registry and recipe tables " + ("updated" if changed else "already up to date"))
