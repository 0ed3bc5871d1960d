"""The README and docs/: generated parts current, links resolve, the README short, and no result number typed
by hand outside a generated part."""

import re

import pytest

from tests.helpers import ROOT
from vpr import docs

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    heads = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_generated_part_of_the_readme_and_docs_is_current():
    assert docs.pages() and (ROOT / "README.md") in docs.pages()
    assert docs.stale_pages() == [], "run `python -m vpr.docs`"


def test_a_stale_or_unknown_generated_part_is_found(tmp_path, monkeypatch):
    page = tmp_path / "README.md"
    page.write_text(
        "x\n<!-- generated:recipe-tables -->\nSTALE-TEXT\n<!-- /generated:recipe-tables -->\n"
    )
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    assert docs.stale_pages() == ["README.md"] and docs.main(["--check"]) == 1
    assert docs.update() == ["README.md"] and docs.stale_pages() == []
    assert "STALE-TEXT" not in page.read_text() and "course_template" in page.read_text()
    page.write_text("<!-- generated:typo -->\n<!-- /generated:typo -->\n")
    with pytest.raises(SystemExit, match="unknown generated part 'typo'"):
        docs.stale_pages()


@pytest.mark.parametrize("page", [p.relative_to(ROOT).as_posix() for p in docs.pages()])
def test_every_relative_link_resolves_to_a_file_and_its_heading(page):
    text = (ROOT / page).read_text()
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        dest = (ROOT / page).parent / path if path else ROOT / page
        if path.endswith(".html"):
            continue  # generated pages (reports/), not committed everywhere
        assert dest.exists(), f"{page}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest.read_text()), (
                f"{page}: no heading for #{anchor} in {path or page}"
            )


def test_the_readme_is_short_and_every_reference_table_lives_in_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for name in ("registry-tables", "section-tables", "recipe-tables"):
        assert f"generated:{name}" not in readme and any(
            f"generated:{name}" in p.read_text() for p in docs.pages()
        )


def _outside_generated(text: str) -> str:
    return docs.MARKER.sub("", text)


@pytest.mark.parametrize("page", [p.relative_to(ROOT).as_posix() for p in docs.pages()])
def test_no_measured_result_is_typed_by_hand(page):
    """Mean ± std cells, recall figures and times are generated from committed result files, never typed."""
    text = _outside_generated((ROOT / page).read_text())
    typed = re.findall(
        r"\d+(?:\.\d+)? ± \d|R@\d+ (?:of |= |)\d+\.\d|\b\d+(?:\.\d+)? (?:ms|s|min)\b(?! \w+ing)",
        text,
    )
    assert not typed, f"{page}: {typed[:5]}"


def _same(a, b) -> bool:
    norm = lambda v: [norm(x) for x in v] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return norm(a) == norm(b)


def test_params_yaml_ships_exactly_the_schema_defaults():
    """params.yaml, the README tables and the builders read one set of defaults: the schema's."""
    from vpr.config import KINDS, load_params
    from vpr.config.catalog import TOP_LEVEL_CHOICES
    from vpr.config.loader import SEED
    from vpr.config.sections import SECTIONS

    raw = load_params(ROOT / "params.yaml")
    wrong = []
    assert raw["seed"] == SEED.default
    for kind in TOP_LEVEL_CHOICES:
        if raw.get(kind) != KINDS[kind].default:
            wrong.append(f"{kind}: {raw.get(kind)!r} != {KINDS[kind].default!r}")
    indexes = KINDS["index"].entries
    for name, (schema, _) in SECTIONS.items():
        given = {
            k: v for k, v in (raw.get(name) or {}).items() if not (name == "eval" and k in indexes)
        }
        assert set(given) == set(schema), f"params.yaml {name}: keys differ from the schema"
        wrong += [
            f"{name}.{k}: {v!r} != {schema[k].default!r}"
            for k, v in given.items()
            if not _same(v, schema[k].default)
        ]
    for kind, k in KINDS.items():
        section = raw.get(k.section) or {}
        if kind == "augmentation":
            continue  # a list of steps, each checked by test_config
        for entry, settings in section.items():
            if kind == "index" and entry not in indexes:
                continue
            schema = k.entries[entry].settings
            wrong += [
                f"{k.section}.{entry}.{key}: {v!r} != {schema[key].default!r}"
                for key, v in (settings or {}).items()
                if not _same(v, schema[key].default)
            ]
    assert not wrong, wrong


def _suite_table(profile, verdicts, seeds=(0, 1, 2)):
    rows = [
        {"variant": v, "seeds": list(seeds), "cells": {"set": {"verdict": w} if w else {}}}
        for v, w in verdicts.items()
    ]
    return {"meta": {"suite": "losses", "profile": profile}, "columns": ["set"], "rows": rows}


def test_the_suite_results_name_each_variant_whose_verdict_differs_between_real_and_synthetic():
    synth = _suite_table(
        "synth",
        {"default": None, "circle": "better", "triplet": "worse (one seed: query noise only)"},
        [0],
    )
    real = _suite_table("cambridge", {"default": None, "circle": "worse", "triplet": "worse"})
    text = docs.real_vs_synthetic({("losses", "synth"): synth, ("losses", "cambridge"): real})
    assert text == (
        "- `losses`: **the verdicts differ**: `circle`: better on synth (1 seed), worse on cambridge (3 seeds) "
        "(`triplet`: worse on synth (1 seed), worse on cambridge (3 seeds))."
    )
    same = docs.real_vs_synthetic({("losses", "synth"): real, ("losses", "cambridge"): real})
    assert same.startswith("- `losses`: the same verdicts: `circle`: worse on synth (3 seeds)")
    assert docs.real_vs_synthetic({("losses", "synth"): synth}) == ""
