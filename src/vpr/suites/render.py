"""A suite's table as Markdown, LaTeX (booktabs) and one offline HTML page with a figure (Vega-Lite rendered to
SVG by vl-convert, no CDN), plus table.json; each file written to a temporary path, then renamed."""

from __future__ import annotations

import html
import json
import os

from vpr.suites.table import Table

DELTA = "ΔR@1 [95 % CI], verdict"


def _budget(t: Table) -> str:
    from vpr.suites.table import shown

    items = ", ".join(f"{k}={shown(v)}" for k, v in t.meta["budget"].items())
    per_run = (
        f"about {t.meta['minutes']:g} min per run on 2 CPU cores" if t.meta.get("minutes") else ""
    )
    return "; ".join(x for x in (items, per_run) if x)


def header_lines(t: Table) -> list[tuple[str, str]]:
    m = t.meta
    seeds = m["seeds"]
    lines = [
        ("question", m["question"]),
        ("data", m["profile"] + (f" ({m['note']})" if m.get("note") else "")),
    ]
    if m["budget"]:
        lines.append(("budget", _budget(t)))
    lines += [
        (
            "seeds",
            f"{', '.join(map(str, seeds))} (cells: mean ± std over the seeds found; Δ: paired bootstrap "
            f"over queries and seeds, {m['resamples']} resamples, vs the baseline '{m['baseline']}')",
        ),
        ("CPU kind", m["cpu"]),
        ("commit", m["commit"]),
        ("date", m["date"]),
    ]
    return lines


def _cells(t: Table, row: dict) -> list[str]:
    out = []
    for title in t.columns:
        c = row["cells"][title]
        out += [c[f"R@{n}"] for n in t.recalls] + [
            f"{c['delta']} {c['verdict']}" if "delta" in c else "—"
        ]
    return out


def _heads(t: Table) -> list[str]:
    return [f"{title} {h}" for title in t.columns for h in [f"R@{n}" for n in t.recalls] + [DELTA]]


def markdown(t: Table) -> str:
    from tabulate import tabulate

    body = []
    for row in t.rows:
        name = (
            f"**{row['variant']}** (baseline)"
            if row["variant"] == t.meta["baseline"]
            else row["variant"]
        )
        body.append([name, row["changes"], str(len(row["seeds"]))] + _cells(t, row))
    table = tabulate(
        body,
        headers=["variant", "overrides", "seeds"] + _heads(t),
        tablefmt="github",
        disable_numparse=True,
    )
    head = "\n".join(f"- {k}: {v}" for k, v in header_lines(t))
    notes = "\n".join(f"- {n}" for n in t.notes)
    return f"## Suite `{t.meta['suite']}` on {t.meta['profile']}\n\n{head}\n\n{table}\n\nNotes:\n\n{notes}\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "—": "---",
    "–": "--",
}


def tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def latex(t: Table) -> str:
    """A booktabs table: one column group per evaluation set (and its night queries)."""
    per = len(t.recalls) + 1
    spec = "ll" + "r" + ("r" * len(t.recalls) + "l") * len(t.columns)
    groups = " & ".join(rf"\multicolumn{{{per}}}{{c}}{{{tex(c)}}}" for c in t.columns)
    rules = " ".join(
        rf"\cmidrule(lr){{{4 + i * per}-{3 + (i + 1) * per}}}" for i in range(len(t.columns))
    )
    heads = " & ".join([tex(f"R@{n}") for n in t.recalls] + [tex(DELTA)])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{tex(t.meta['question'])} Data: {tex(t.meta['profile'])}"
        + (f"; budget: {tex(_budget(t))}" if t.meta["budget"] else "")
        + rf"; mean $\pm$ std over seeds {tex(', '.join(map(str, t.meta['seeds'])))}; $\Delta$R@1 vs "
        rf"{tex(t.meta['baseline'])} with its 95\% interval (paired bootstrap). CPU kind: {tex(t.meta['cpu'])}; "
        rf"{tex(t.meta['commit'])}, {tex(t.meta['date'])}.}}",
        rf"\label{{tab:suite-{t.meta['suite']}-{t.meta['profile']}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        rf" & & & {groups} \\",
        rules,
        rf"Variant & Overrides & Seeds & {' & '.join([heads] * len(t.columns))} \\",
        r"\midrule",
    ]
    for row in t.rows:
        name = tex(row["variant"]) + (" (baseline)" if row["variant"] == t.meta["baseline"] else "")
        lines.append(
            " & ".join(
                [name, rf"\texttt{{{tex(row['changes'])}}}", str(len(row["seeds"]))]
                + [tex(c) for c in _cells(t, row)]
            )
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def page(t: Table, svg: str) -> str:
    from vpr.viz.report_page import CSP

    e = html.escape
    head = "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in header_lines(t))
    ths = "".join(f"<th>{e(h)}</th>" for h in ["variant", "overrides", "seeds"] + _heads(t))
    trs = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(c)}</td>"
            for c in [r["variant"], r["changes"], str(len(r["seeds"]))] + _cells(t, r)
        )
        + "</tr>"
        for r in t.rows
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in t.notes)
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 6px;font-size:13px}th{background:#f3f3f3}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
        f'content="{CSP}"><title>Suite {e(t.meta["suite"])}</title><style>{style}</style></head><body>'
        f"<h1>Suite {e(t.meta['suite'])} on {e(t.meta['profile'])}</h1><ul>{head}</ul>"
        f"<table><tr>{ths}</tr>{trs}</table><h2>R@1, mean ± std over seeds</h2>{svg}"
        f"<h2>Notes</h2><ul>{notes}</ul></body></html>\n"
    )


def as_json(t: Table) -> str:
    return (
        json.dumps(
            dict(meta=t.meta, columns=t.columns, recalls=t.recalls, rows=t.rows, notes=t.notes),
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


def write(t: Table, out_dir: str) -> list[str]:
    """table.md, table.tex, table.json and index.html in ``out_dir``, each renamed into place when complete."""
    from vpr import compare as vc
    from vpr.io import atomic_file
    from vpr.viz import charts

    svg = charts.to_svg(vc.figure(t.blocks))
    contents = {
        "table.md": markdown(t),
        "table.tex": latex(t),
        "table.json": as_json(t),
        "index.html": page(t, svg),
    }
    written = []
    for name, text in contents.items():
        with atomic_file(os.path.join(out_dir, name)) as fh:
            fh.write(text)
        written.append(os.path.join(out_dir, name))
    return written
