"""The generated parts of README.md and docs/*.md: `python -m vpr.docs` rewrites them, `--check` fails when one
is stale (a test runs it). A part sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``;
NAME is one of BLOCKS: reference tables from the params schema and the recipes, and result tables read from
committed result files (never typed by hand)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/*.md")
MARKER = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)
REAL_COMPARE = "reports/real_photos/compare.md"
# the untrained EfficientNet-Lite0 + GeM(p=3) at 320 x 320 stretched on the Cambridge test split, R@1/5/10/20, from a
# computation independent of this project (plain torch + faiss; the real-photos issue, tests/data/test_cambridge.py)
REFERENCE_UNTRAINED = (63.1, 82.4, 88.8, 92.6)
FIGURES = "benchmarks/results/figures.json"
LOCALIZE_OOD = "benchmarks/results/localize_ood.json"
SUITES = (
    "reports/suites"  # <suite>-<profile>/table.json and table.md, written by python -m vpr.suites
)


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
        parts.append(
            f"#### {kind} — `{key}`, settings in `{k.section}"
            + (".<name>" if kind == "index" else "")
            + "`\n"
        )
        parts.append("| name | what it is | settings (defaults) | reference |")
        parts.append("|---|---|---|---|")
        for name, entry in k.entries.items():
            settings = (
                ", ".join(f"`{key}: {_value(s.default)}`" for key, s in entry.settings.items())
                or "—"
            )
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


def _read(path: str) -> str:
    return (ROOT / path).read_text()


def _machine(m: dict) -> str:
    return f"{m.get('cores', '?')}-core {m.get('cpu', '?')}, CPU capability {m.get('cpu_capability', '?')}"


def _baseline_recalls(compare: str, eval_set: str) -> list[float]:
    """R@1/5/10/20 means of the baseline row of ``eval_set``'s table in a compare.md."""
    table = compare.split(f"### {eval_set}:", 1)[1]
    row = next(line for line in table.splitlines() if line.startswith("| baseline "))
    return [float(cell.split("±")[0]) for cell in row.strip("|").split("|")[2:6]]


def reference_check(compare: str) -> str:
    ours = _baseline_recalls(compare, "cambridge_test")
    one_query = 100 / 420
    ok = all(
        abs(a - b) <= one_query + 0.05 for a, b in zip(ours, REFERENCE_UNTRAINED)
    )  # 0.05: both rounded
    return (
        f"Reference check (untrained, 320 x 320 stretched): R@1/5/10/20 = {' / '.join(f'{x:.1f}' for x in ours)}"
        f" against {' / '.join(map(str, REFERENCE_UNTRAINED))} from an independent computation: "
        + ("within one query at every N." if ok else "**differs by more than one query**.")
    )


def real_photos() -> str:
    """The trained real-photo profile against the untrained network, from the committed compare output, with
    the split sizes and the first repro's time from the committed benchmark figures."""
    compare = _read(REAL_COMPARE).strip()
    compare = compare + "\n\n" + reference_check(compare)
    real = json.loads(_read(FIGURES)).get("real") if (ROOT / FIGURES).exists() else None
    if not real:
        return compare + "\n"
    raw = real["figures"][0]["raw"]
    sizes, split = raw["sizes"], raw["split"]
    test, val, train = sizes["cambridge_test"], sizes["val"], sizes["train"]
    loc = raw["localize"]
    return (
        f"Split: test {test['num_database']:,} database images / {test['num_queries']} queries; validation "
        f"{val['num_database']} / {val['num_queries']}; training {train['num_images']} images in "
        f"{train['num_places']} places.\n\n{compare}\n\nFirst `dvc repro` of the profile on a fresh copy: "
        f"{raw['seconds'] / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in split.items() if v >= 10)}; "
        f"{_machine(real.get('machine', {}))}, commit {real.get('commit', '?')}, load average "
        f"{raw['load_before'][0]:.1f} before: a shared machine, see benchmarks/RESULTS.md). `localize` with the trained "
        f"model on the {loc['photos']} test queries: top-1 = evaluate's for {loc['top1_agree']}.\n"
    )


def localize_ood() -> str:
    """Photos of another city flagged, and what the abstention costs on the test set
    (benchmarks/bench_localize_ood.py)."""
    d = json.loads(_read(LOCALIZE_OOD))
    rows = [
        "| model and database | photos from another city flagged | test queries: correct top-1 kept | "
        "wrong top-1 flagged |",
        "|---|---|---|---|",
    ]
    for side in (d["a"], d["b"]):
        inside, outside = side["in_database"], side["out_of_database"]
        wrong = inside["queries"] - inside["correct_top1"]
        rows.append(
            f"| {side['model']}, `{side['database']}` | {outside['flagged']} / {outside['photos']} "
            f"{side['other_city']} ({100 * outside['flagged'] / outside['photos']:.1f} %) | "
            f"{inside['correct_kept']} / {inside['correct_top1']} "
            f"({100 * inside['correct_kept'] / inside['correct_top1']:.1f} %) | "
            f"{inside['wrong_flagged']} / {wrong} ({100 * inside['wrong_flagged'] / wrong:.1f} %) |"
        )
    machine = _machine({**d["machine"], "cpu_capability": d["cpu_capability"]})
    return (
        f"Measured by `python benchmarks/bench_localize_ood.py` ({machine}; [{LOCALIZE_OOD}](../{LOCALIZE_OOD})):"
        "\n\n" + "\n".join(rows) + "\n"
    )


def _suite_tables() -> dict:
    """(suite, profile) -> the committed table.json of that suite run."""
    out = {}
    for path in sorted((ROOT / SUITES).glob("*/table.json")):
        t = json.loads(path.read_text())
        out[(t["meta"]["suite"], t["meta"]["profile"])] = t
    return out


def _verdicts(table: dict) -> dict:
    """variant -> (the ΔR@1 verdict word on the table's first (day) column, its number of seeds)."""
    col = table["columns"][0]
    return {
        r["variant"]: (r["cells"][col]["verdict"].split(" (")[0], len(r.get("seeds") or ()))
        for r in table["rows"]
        if "verdict" in r["cells"].get(col, {})
    }


def _said(variant: str, synth: tuple, real: tuple) -> str:
    def seeds(n):
        return f"{n} seed{'s' * (n != 1)}"

    return f"`{variant}`: {synth[0]} on synth ({seeds(synth[1])}), {real[0]} on cambridge ({seeds(real[1])})"


def real_vs_synthetic(tables: dict) -> str:
    """For every suite run on both the synthetic city and the real photos: the variants whose verdict against
    the baseline differs between the two (the synthetic city's evidence does not carry over to photos)."""
    lines = []
    for suite in sorted({s for s, _ in tables}):
        if (suite, "synth") not in tables or (suite, "cambridge") not in tables:
            continue
        synth, real = _verdicts(tables[suite, "synth"]), _verdicts(tables[suite, "cambridge"])
        both = [v for v in synth if v in real]

        differ = [_said(v, synth[v], real[v]) for v in both if synth[v][0] != real[v][0]]
        same = [_said(v, synth[v], real[v]) for v in both if synth[v][0] == real[v][0]]
        lines.append(
            f"- `{suite}`: "
            + ("**the verdicts differ**: " + "; ".join(differ) if differ else "the same verdicts")
            + (
                ""
                if not same
                else (" (" if differ else ": ") + "; ".join(same) + (")" if differ else "")
            )
            + "."
        )
    return "\n".join(lines)


def suite_tables() -> str:
    """Every committed suite table, and where real photos and the synthetic city disagree."""
    tables = _suite_tables()
    if not tables:
        return "No suite table is committed yet.\n"
    parts = []
    for suite, profile in sorted(tables):
        md = (ROOT / SUITES / f"{suite}-{profile}" / "table.md").read_text()
        link = f"../{SUITES}/{suite}-{profile}/index.html"
        parts.append(
            md.replace("## Suite", "### Suite", 1).rstrip() + f"\n\nFiles: [{link}]({link})\n"
        )
    agree = real_vs_synthetic(tables)
    if agree:
        parts.append("### Real photos against the synthetic city\n\n" + agree + "\n")
    return "\n".join(parts)


BLOCKS = {
    "registry-tables": registry_tables,
    "section-tables": section_tables,
    "recipe-tables": recipe_tables,
    "real-photos": real_photos,
    "localize-ood": localize_ood,
    "suite-tables": suite_tables,
    "real-vs-synthetic": lambda: (
        real_vs_synthetic(_suite_tables())
        or "No suite has been run on both the synthetic city and the real photos yet."
    ),
}


def pages() -> list[Path]:
    return sorted({p for pattern in PAGES for p in ROOT.glob(pattern)})


def render(text: str, where: str = "") -> str:
    """``text`` with every generated part rewritten; an unknown NAME is an error naming the page."""

    def fill(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise SystemExit(
                f"error: {where}: unknown generated part '{m.group(2)}' (known: {', '.join(BLOCKS)})"
            )
        return f"{m.group(1)}{BLOCKS[m.group(2)]().rstrip()}\n{m.group(4)}"

    return MARKER.sub(fill, text)


def stale_pages() -> list[str]:
    return [
        str(p.relative_to(ROOT)) for p in pages() if render(p.read_text(), str(p)) != p.read_text()
    ]


def update() -> list[str]:
    """Rewrite every page whose generated parts changed (atomically); the pages rewritten."""
    from vpr.io import atomic_file

    changed = stale_pages()
    for name in changed:
        path = ROOT / name
        text = render(path.read_text(), name)
        with atomic_file(path) as fh:
            fh.write(text)
    return changed


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        stale = stale_pages()
        for name in stale:
            print(f"{name}: generated parts are stale; run `python -m vpr.docs`", file=sys.stderr)
        return 1 if stale else 0
    changed = update()
    print("rewrote " + ", ".join(changed) if changed else "every generated part is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
