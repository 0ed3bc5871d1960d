"""The report stage's page: one self-contained, offline HTML report of a run: recall table, recall@N curves,
training curves, dataset maps, prediction pictures and the run's params.

Charts are inline SVG (rendered by vl-convert), pictures are data URIs, and a Content-Security-Policy
forbids any network load, so the file can be mailed, archived and opened without internet. The output
depends only on the inputs (no dates, no absolute paths): same inputs -> same bytes.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass

from vpr import dvc_params
from vpr.data.groundtruth import load_eval_set, load_train_set
from vpr.errors import DataError
from vpr.eval.evaluate import load_features
from vpr.eval.query_results import read_queries
from vpr.viz import charts, maps

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
SECTIONS = (
    ("summary", "Run"),
    ("recalls", "Recall table"),
    ("recall-curves", "Recall@N curves"),
    ("training", "Training curves"),
    ("maps", "Dataset maps"),
    ("predictions", "Predictions"),
    ("params", "Params"),
)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243447;color:#fff;padding:14px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cdd6e0;font-size:14px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 28px;z-index:1}
nav a{margin-right:18px;color:#245;text-decoration:none;font-size:14px}nav a:hover{text-decoration:underline}
main{padding:0 28px 40px}section{margin-top:26px}h2{border-bottom:2px solid #243447;padding-bottom:4px}
h3{margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;font-size:14px}th,td{border:1px solid #ccc;padding:5px 10px}
th{background:#eef1f5}td{text-align:right}td:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px}figcaption{font-size:13px;color:#555;max-width:560px}
.pictures figure{margin-bottom:10px}.pictures img{max-width:100%;display:block}
dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px;font-size:14px}dt{color:#555}dd{margin:0}
pre{background:#fff;border:1px solid #ddd;padding:10px;font-size:13px;overflow-x:auto}
.note{color:#666;font-size:13px}
"""


@dataclass
class ReportInputs:
    """Where the pieces of one run lie (the stage fills this from the pipeline layout)."""

    sets: dict[str, dict]  # eval set -> {metrics, queries, curve, predictions, gt, features} paths
    recall_table: str  # metrics/recalls.md (the recall_table stage's markdown)
    train_log_dir: str  # dvclive plots folder: <metric>.tsv per metric
    train_summary: str  # dvclive metrics.json
    train_time: str | None = None  # metrics/train/time.json: train_minutes
    train_gt: str | None = None  # data/gt/train (training places)
    val_gt: str | None = None  # data/gt/val
    params_path: str = "params.yaml"
    radius_m: float = 25.0
    title: str = "VPR run report"


def build_report(inputs: ReportInputs) -> str:
    """The whole HTML page as a string."""
    _check_inputs(inputs)
    summary = _read_json(inputs.train_summary)
    params_text = open(inputs.params_path).read()
    params = dvc_params.load(params_text) or {}
    chart = _Charts()
    body = [
        _section("summary", "Run", _summary(inputs, summary, params)),
        _section("recalls", "Recall table", _recalls(inputs)),
        _section("recall-curves", "Recall@N curves", _recall_curves(inputs, chart)),
        _section("training", "Training curves", _training(inputs, summary, chart)),
        _section("maps", "Dataset maps", _maps(inputs, chart)),
        _section("predictions", "Predictions", _predictions(inputs)),
        _section(
            "params",
            "Params",
            f"<p class='note'>{html.escape(os.path.basename(inputs.params_path))} of this "
            f"run, as the pipeline read it.</p><pre>{html.escape(params_text)}</pre>",
        ),
    ]
    nav = "".join(f"<a href='#{sid}'>{html.escape(name)}</a>" for sid, name in SECTIONS)
    choice = " · ".join(
        f"{k} {params[k]}"
        for k in ("backbone", "aggregator", "loss", "miner", "optimizer")
        if k in params
    )
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(inputs.title)}</title><style>{STYLE}</style></head>\n<body>"
        f"<header><h1>{html.escape(inputs.title)}</h1><p>{html.escape(choice)}</p></header>"
        f"<nav>{nav}</nav>\n<main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


# --- sections -------------------------------------------------------------------------------------------


def _summary(inputs: ReportInputs, summary: dict, params: dict) -> str:
    items = []
    info = _features_info(inputs)
    spec = info.get("spec") or {}
    if spec:
        items.append(
            (
                "model",
                f"{spec.get('backbone')} + {spec.get('aggregator')}, "
                f"{info.get('descriptor_dim')}-D descriptors",
            )
        )
    for k in ("loss", "miner", "optimizer", "scheduler"):
        if k in params:
            items.append((k, str(params[k])))
    if "best_epoch" in summary:
        items.append(("training", _training_line(summary, inputs.train_time)))
    best = [f"{k[9:]} {v:.1f}" for k, v in summary.items() if k.startswith("best_val_R@")]
    if best:
        items.append(("best validation", ", ".join(best)))
    for name, paths in inputs.sets.items():
        m = _read_json(paths["metrics"])
        night = f" ({m['night']['num_queries']} at night)" if "night" in m else ""
        items.append(
            (
                f"set {name}",
                f"{m.get('num_database', '?'):,} database images, "
                f"{m.get('num_queries', '?'):,} queries{night}",
            )
        )
    return (
        "<dl>"
        + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
        + "</dl>"
    )


def _training_line(summary: dict, time_path: str | None) -> str:
    """'5 epochs in 12.3 min; best epoch 5' (epoch 0: the untrained model)."""
    runs = summary.get("epochs_run")
    minutes = (
        _read_json(time_path).get("train_minutes")
        if time_path and os.path.isfile(time_path)
        else None
    )
    took = f" in {minutes:.1f} min" if minutes is not None else ""
    stop = ", stopped early" if summary.get("stopped_early") else ""
    best = summary["best_epoch"]
    return f"{runs} epoch{'' if runs == 1 else 's'}{took}{stop}; best epoch {best}" + (
        " (the untrained model)" if best == 0 else ""
    )


def _recalls(inputs: ReportInputs) -> str:
    links = [
        f"<a href='{html.escape(_from_reports(p['queries']))}'>{html.escape(name)}</a>"
        for name, p in inputs.sets.items()
        if p.get("queries") and os.path.isfile(p["queries"])
    ]
    per_query = (
        f"<p class='note'>Per-query results (rank of the first correct match, top-k database indices; "
        f"what <code>python -m vpr.compare</code> pairs across experiments): {', '.join(links)}.</p>"
        if links
        else ""
    )
    return (
        f"<p class='note'>Recall@N in percent: a query counts at N if one of its top N database images "
        f"lies within {inputs.radius_m:g} m (UTM). Night rows are the night queries only.</p>"
        + markdown_table_to_html(open(inputs.recall_table).read())
        + per_query
    )


def _from_reports(path: str) -> str:
    """A file as a link from the page, which the stage writes to reports/index.html."""
    return os.path.relpath(path, "reports").replace(os.sep, "/")


def markdown_table_to_html(text: str) -> str:
    """The pipeline's recall table (a GitHub-style markdown table) as an HTML table."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.strip().startswith("|")
    ]
    rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]  # drop the |---|---| rule
    if not rows:
        raise DataError("recall table: no markdown table found; run the recall_table stage")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _recall_curves(inputs: ReportInputs, chart: _Charts) -> str:
    curves = {name: charts.read_table(p["curve"]) for name, p in inputs.sets.items()}
    return _row(
        [
            chart.figure(
                charts.recall_curves_chart(curves),
                "Recall@N for N = 1 .. "
                f"{max(len(c) for c in curves.values())}, one line per evaluation set.",
            )
        ]
    )


def _training(inputs: ReportInputs, summary: dict, chart: _Charts) -> str:
    specs = charts.training_charts(inputs.train_log_dir, summary.get("best_epoch"))
    if not specs:
        return "<p class='note'>No training log (train.epochs = 0?).</p>"
    return (
        "<p class='note'>Per epoch; epoch 0 is the untrained model (validated before any training step, "
        "so it has no training loss). The dashed line marks the epoch saved as models/best.pt.</p>"
        + _row([chart.figure(s) for s in specs])
    )


def _maps(inputs: ReportInputs, chart: _Charts) -> str:
    parts = []
    for name, paths in inputs.sets.items():
        gt = load_eval_set(paths["gt"])
        db, q = load_features(paths["features"], (gt.num_database, gt.num_queries))
        _, correct, dist = maps.top1_predictions(paths["features"], db, q, gt)
        spec, caption = maps.eval_set_map(gt, f"{name}: queries by top-1 prediction", correct)
        bins = maps.error_bins(dist, correct, inputs.radius_m)
        colors = {k: ("#2ca02c" if k == "correct" else "#d62728") for k in bins}
        hist = charts.histogram_chart(
            bins, f"{name}: top-1 distance to the query", "top-1 error", colors
        )
        parts.append(
            f"<h3>{html.escape(name)}</h3>"
            + _row(
                [
                    chart.figure(spec, caption),
                    chart.figure(
                        hist,
                        "How far the top-1 database image lies from the query: near misses vs "
                        "another part of the city.",
                    ),
                ]
            )
        )
    if inputs.val_gt and os.path.isdir(inputs.val_gt):
        gt = load_eval_set(inputs.val_gt)
        spec, caption = maps.eval_set_map(gt, "val: database and queries")
        parts.append("<h3>val (picks the best epoch)</h3>" + _row([chart.figure(spec, caption)]))
    if inputs.train_gt and os.path.isdir(inputs.train_gt):
        ts = load_train_set(inputs.train_gt)
        figs = [chart.figure(spec, caption) for spec, caption in maps.train_places_maps(ts)]
        parts.append("<h3>training places</h3>" + _row(figs))
    return (
        "<p class='note'>Positions in metres (UTM) from the image names. Grey: database; green / red: "
        "queries whose top-1 prediction is within / beyond the ground-truth radius.</p>"
        + "".join(parts)
    )


def _predictions(inputs: ReportInputs) -> str:
    parts = [
        "<p class='note'>Each row: the query (grey frame), then its top-k database images, framed green "
        "when within the ground-truth radius and red otherwise, labelled with rank and distance.</p>"
    ]
    for name, paths in inputs.sets.items():
        folder = paths["predictions"]
        files = (
            sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg", ".png")))
            if os.path.isdir(folder)
            else []
        )
        verdicts = _top1_verdicts(paths.get("queries"))
        figs = []
        for f in files:
            m = re.match(r"query_(\d+)\.", f)
            caption = f"query {int(m.group(1))}{verdicts.get(int(m.group(1)), '')}" if m else f
            figs.append(
                f"<figure><img alt='{html.escape(caption)}' src='{_data_uri(os.path.join(folder, f))}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        body = "".join(figs) or "<p class='note'>No pictures (viz.num_queries = 0).</p>"
        parts.append(f"<h3>{html.escape(name)}</h3><div class='pictures'>{body}</div>")
    return "".join(parts)


def _top1_verdicts(queries_path: str | None) -> dict[int, str]:
    """Query index -> ': top-1 correct' / ': top-1 wrong', from the per-query results (empty without them, and
    for queries without coordinates)."""
    if not queries_path or not os.path.isfile(queries_path):
        return {}
    with open(queries_path) as fh:
        rows = read_queries(fh)
    return {
        r["query"]: f": top-1 {'correct' if r['first_correct'] == 1 else 'wrong'}"
        for r in rows
        if r["positives"] is not None
    }


# --- helpers --------------------------------------------------------------------------------------------


class _Charts:
    """Renders specs to inline SVG, giving each chart its own id prefix (ids must be unique in a page)."""

    def __init__(self):
        self.count = 0

    def figure(self, spec: dict, caption: str = "") -> str:
        self.count += 1
        svg = _prefix_ids(charts.to_svg(spec), f"c{self.count}-")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return f"<figure class='chart'>{svg}{cap}</figure>"


def _prefix_ids(svg: str, prefix: str) -> str:
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)


def _section(sid: str, title: str, content: str) -> str:
    return f"<section id='{sid}'><h2>{html.escape(title)}</h2>\n{content}\n</section>"


def _row(items) -> str:
    return "<div class='row'>" + "".join(items) + "</div>"


def _data_uri(path: str) -> str:
    mime = "image/png" if path.lower().endswith(".png") else "image/jpeg"
    with open(path, "rb") as fh:
        return f"data:{mime};base64,{base64.b64encode(fh.read()).decode()}"


def _read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _features_info(inputs: ReportInputs) -> dict:
    for paths in inputs.sets.values():
        p = os.path.join(paths["features"], "info.json")
        if os.path.isfile(p):
            return _read_json(p)
    return {}


def _check_inputs(inputs: ReportInputs) -> None:
    """Every input named up front, so a missing one fails before any rendering."""
    needed = [inputs.params_path, inputs.train_summary, inputs.recall_table]
    for paths in inputs.sets.values():
        needed += [
            paths["metrics"],
            paths["curve"],
            os.path.join(paths["gt"], "positives_offsets.npy"),
            os.path.join(paths["features"], "database.npy"),
        ]
    for path in needed:
        if not os.path.exists(path):
            raise DataError(
                f"{path}: needed by the report but missing; run `dvc repro` (the stages before report)"
            )
