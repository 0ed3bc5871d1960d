"""Charts as Vega-Lite specs, rendered offline to SVG by vl-convert (no browser, no CDN).

The same declarative language as ``dvc plots``, so a chart here and one in ``dvc plots diff`` read alike.
"""

from __future__ import annotations

import csv
import os
import re

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # an identifier only: nothing is fetched
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


def to_svg(spec: dict) -> str:
    """Render a Vega-Lite spec to a standalone SVG string (offline)."""
    import vl_convert

    return vl_convert.vegalite_to_svg({"$schema": SCHEMA, "config": {"font": FONT}, **spec})


def line_chart(
    rows: list[dict],
    x: str,
    y: str,
    series: str | None = None,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    y_domain=None,
    x_domain=None,
    integer_x: bool = False,
    rule_x=None,
    width: int = 280,
    height: int = 200,
) -> dict:
    """Lines with points of ``y`` against ``x`` (one colour per ``series`` value); optional dashed vertical
    rule at ``rule_x`` (e.g. the best epoch)."""
    x_enc = {"field": x, "type": "quantitative", "title": x_title or x}
    if x_domain:
        x_enc["scale"] = {"domain": list(x_domain), "nice": False}
    if integer_x:
        x_enc["axis"] = {"tickMinStep": 1, "format": "d"}
    enc = {
        "x": x_enc,
        "y": {
            "field": y,
            "type": "quantitative",
            "title": y_title or y,
            "scale": {"domain": list(y_domain)} if y_domain else {"zero": False},
        },
    }
    if series:
        enc["color"] = {"field": series, "type": "nominal", "title": None, "sort": None}
    layers = [
        {"mark": {"type": "line", "point": len(rows) <= 60, "strokeWidth": 2}, "encoding": enc}
    ]
    if rule_x is not None:
        layers.append(
            {
                "data": {"values": [{"x": rule_x}]},
                "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#888"},
                "encoding": {"x": {"field": "x", "type": "quantitative"}},
            }
        )
    return {
        "title": title,
        "width": width,
        "height": height,
        "data": {"values": rows},
        "layer": layers,
    }


def read_table(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV or TSV file (dvclive's .tsv logs, the recall curve .csv), numbers as floats."""
    path = os.fspath(path)
    with open(path, newline="") as fh:
        text = fh.read()
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.endswith(".tsv") else ",")
    rows = []
    for r in reader:
        rows.append({k: _number(v) for k, v in r.items()})
    return rows


def _number(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def recall_curves_chart(curves: dict[str, list[dict]]) -> dict:
    """Recall@N against N, one line per evaluation set (rows from metrics/curves/<set>.csv)."""
    rows = [
        {"N": r["N"], "recall": r["recall"], "dataset": name}
        for name, rs in curves.items()
        for r in rs
    ]
    return line_chart(
        rows,
        "N",
        "recall",
        series="dataset",
        title="Recall@N",
        x_title="N (top-N retrieved)",
        y_title="recall@N (%)",
        y_domain=(0, 100),
        integer_x=True,
        width=420,
        height=260,
    )


def training_charts(log_dir: str | os.PathLike, best_epoch: int | None = None) -> list[dict]:
    """Training loss (``train_loss``), learning rate and validation recalls per epoch, from a dvclive plots folder
    (one ``<metric>.tsv`` per metric, columns step and the metric; step = epoch)."""
    log_dir = os.fspath(log_dir)
    files = (
        sorted(f for f in os.listdir(log_dir) if f.endswith(".tsv"))
        if os.path.isdir(log_dir)
        else []
    )
    tables = {f[:-4]: read_table(os.path.join(log_dir, f)) for f in files}
    last = max((r["step"] for rows in tables.values() for r in rows), default=0)
    common = dict(x_title="epoch", x_domain=(0, max(last, 1)), integer_x=True, rule_x=best_epoch)
    charts = []
    if "train_loss" in tables:
        charts.append(
            line_chart(
                [{"epoch": r["step"], "loss": r["train_loss"]} for r in tables["train_loss"]],
                "epoch",
                "loss",
                title="Training loss",
                y_title="loss (epoch mean)",
                **common,
            )
        )
    if "lr" in tables:
        charts.append(
            line_chart(
                [{"epoch": r["step"], "lr": r["lr"]} for r in tables["lr"]],
                "epoch",
                "lr",
                title="Learning rate",
                y_title="learning rate",
                **common,
            )
        )
    val = sorted(
        (k for k in tables if re.fullmatch(r"val_R@\d+", k)), key=lambda k: int(k.split("@")[1])
    )
    if val:
        rows = [
            {"epoch": r["step"], "recall": r[k], "metric": k[4:]} for k in val for r in tables[k]
        ]
        charts.append(
            line_chart(
                rows,
                "epoch",
                "recall",
                series="metric",
                title="Validation recall",
                y_title="recall (%)",
                y_domain=(0, 100),
                **common,
            )
        )
    return charts


def histogram_chart(
    counts: dict[str, int],
    title: str,
    x_title: str,
    colors: dict[str, str] | None = None,
    width: int = 300,
    height: int = 200,
) -> dict:
    """Bars of pre-binned counts, in the given order."""
    rows = [{"bin": k, "count": int(v)} for k, v in counts.items()]
    color = {"value": "#4c78a8"}
    if colors:
        color = {
            "field": "bin",
            "type": "nominal",
            "legend": None,
            "scale": {"domain": list(colors), "range": list(colors.values())},
        }
    return {
        "title": title,
        "width": width,
        "height": height,
        "data": {"values": rows},
        "mark": {"type": "bar"},
        "encoding": {
            "x": {
                "field": "bin",
                "type": "ordinal",
                "sort": None,
                "title": x_title,
                "axis": {"labelAngle": -30},
            },
            "y": {"field": "count", "type": "quantitative", "title": "queries"},
            "color": color,
        },
    }
