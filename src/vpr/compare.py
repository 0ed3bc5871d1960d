"""Compare experiments with their noise, from the DVC experiment store.

    dvc exp run --queue -S 'seed=0,1,2' -S 'loss=multisimilarity,circle' && dvc queue start
    python -m vpr.compare [--baseline loss=multisimilarity] [--all-commits] [--out reports/compare]

Experiments that differ only by ``seed`` form one variant. Per evaluation set (and its night queries), it
prints mean ± std over seeds of R@1/5/10/20, and for every variant against the baseline the R@1 difference
with a 95 % confidence interval (paired bootstrap over queries, seeds resampled within each variant) and a
verdict: better, worse or within noise; for a "within noise", about how many seeds per variant would resolve
a 2-point difference at the spread measured. ``--out`` also writes the table and a figure as one offline page.
"""

from __future__ import annotations

import argparse
import html
import os
import sys

from vpr.errors import DataError, VPRError
from vpr.eval import statistics as cmp

RESOLVE_POINTS = 2.0  # the R@1 difference a comparison should be able to tell from noise


def resolution_notes(blocks: dict[str, list[dict]]) -> list[str]:
    """Where the baseline's spread comes from (queries or training), and for each "within noise" verdict, how
    many seeds per variant would resolve ±RESOLVE_POINTS."""
    notes = []
    for title, rows in blocks.items():
        parts = rows[0].get("spread_parts")
        if parts:
            notes.append(
                f"{title}, baseline: its R@1 spread over {len(rows[0]['seeds'])} seeds, std {parts[0]:.1f}, is "
                f"{parts[1]:.1f} from the {rows[0]['queries']} queries (more queries shrink it) and "
                f"{parts[2]:.1f} shared by all queries (training: more seeds average it out), in quadrature"
            )
        for r in rows:
            if "seeds_needed" not in r:
                continue
            if r["seeds_needed"]:
                how = (
                    f"about {r['seeds_needed']} seeds per variant would narrow the interval to "
                    f"±{RESOLVE_POINTS:g} R@1 (from the spread measured)"
                )
            elif min(len(r["seeds"]), len(rows[0]["seeds"])) < 2:
                how = "a side has one seed, so the spread over seeds is unmeasured: run more seeds"
            else:
                how = (
                    f"the query noise alone exceeds ±{RESOLVE_POINTS:g} R@1 on {r['queries']} queries: more "
                    "queries are needed, not seeds"
                )
            notes.append(f"{title}, {r['variant']}: within noise; {how}")
    return notes


def baseline_line(
    baseline, variants, selector: str | None, reference: dict | None, source: str
) -> str:
    """Which variant is the baseline and why, with its values of the keys that vary across variants, e.g.
    'baseline: the committed params (HEAD 9f22e62): loss=multisimilarity'."""
    if selector:
        how = f"--baseline {selector}"
    elif reference is not None and cmp.same_params(baseline.params, reference):
        how = f"the committed params ({source})"
    else:
        how = (
            f"the variant with the most seeds ({len(baseline.runs)}); no run has the committed params "
            f"({source})"
        )
    keys = cmp.distinguishing(baseline, variants)
    return f"baseline: {how}: {keys}" if keys else f"baseline: {how}"


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def comparison_rows(
    variants, baseline, eval_set: str, ns, night: bool, resamples: int
) -> list[dict]:
    """One row per variant: seeds, mean ± std of each R@N, and (not for the baseline) the R@1 difference
    with its interval and verdict."""
    base_ranks = cmp.outcomes(baseline, eval_set, night)[0]
    rows = []
    for v in [baseline] + [x for x in variants if x is not baseline]:
        ranks, _, names = cmp.outcomes(v, eval_set, night)
        if v is not baseline and ranks.shape[1] != base_ranks.shape[1]:
            raise DataError(
                f"{eval_set}: {v.label} has {ranks.shape[1]} queries, the baseline "
                f"{base_ranks.shape[1]}; compare runs of the same evaluation set"
            )
        row = dict(
            variant=v.label,
            seeds=v.seeds,
            queries=len(names),
            summary=cmp.recall_summary(ranks, ns),
        )
        if v is baseline:
            row["spread_parts"] = cmp.spread_parts(ranks <= 1)
        else:
            diff, low, high = cmp.paired_bootstrap(ranks <= 1, base_ranks <= 1, resamples)
            one_seed = min(len(v.runs), len(baseline.runs)) == 1
            row.update(diff=diff, low=low, high=high, verdict=cmp.verdict(low, high, one_seed))
            if cmp.verdict(low, high) == "within noise":
                row["seeds_needed"] = cmp.seeds_to_resolve(
                    ranks <= 1, base_ranks <= 1, RESOLVE_POINTS
                )
        rows.append(row)
    return rows


def markdown(title: str, rows: list[dict], ns) -> str:
    from tabulate import tabulate

    headers = (
        ["variant", "seeds"] + [f"R@{n}" for n in ns] + ["ΔR@1 vs baseline [95 % CI]", "verdict"]
    )
    table = []
    for r in rows:
        delta = f"{r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]" if "diff" in r else "—"
        table.append(
            [r["variant"], len(r["seeds"])]
            + [_fmt(*r["summary"][n]) for n in ns]
            + [delta, r.get("verdict", "—")]
        )
    return f"### {title}\n\n" + tabulate(
        table, headers=headers, tablefmt="github", disable_numparse=True
    )


def figure(blocks: dict[str, list[dict]]) -> dict:
    """Vega-Lite: mean R@1 per variant with ± std error bars, one panel per evaluation set / subset."""
    values = [
        dict(
            block=name,
            variant=r["variant"],
            mean=r["summary"][1][0],
            low=r["summary"][1][0] - (r["summary"][1][1] or 0),
            high=r["summary"][1][0] + (r["summary"][1][1] or 0),
        )
        for name, rows in blocks.items()
        for r in rows
    ]
    y = {"field": "variant", "type": "nominal", "sort": None, "title": None}
    return {
        "data": {"values": values},
        "facet": {"row": {"field": "block", "type": "nominal", "title": None, "sort": None}},
        "spec": {
            "width": 360,
            "layer": [
                {
                    "mark": {"type": "bar", "color": "#9ecae9"},
                    "encoding": {
                        "y": y,
                        "x": {
                            "field": "mean",
                            "type": "quantitative",
                            "title": "R@1 (%), mean ± std",
                        },
                    },
                },
                {
                    "mark": {"type": "rule", "color": "#243447", "strokeWidth": 2},
                    "encoding": {
                        "y": y,
                        "x": {"field": "low", "type": "quantitative"},
                        "x2": {"field": "high"},
                    },
                },
            ],
        },
        "resolve": {"scale": {"y": "independent"}},
    }


def write_page(out_dir: str, text: str, spec: dict) -> None:
    from vpr.io import atomic_dir
    from vpr.viz import charts
    from vpr.viz.report_page import CSP

    svg = charts.to_svg(spec)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
        f"content=\"{CSP}\"><title>Comparison</title></head><body style='font-family:sans-serif'>"
        f"<h1>Comparison of experiments</h1>{svg}<pre>{html.escape(text)}</pre></body></html>\n"
    )
    with atomic_dir(out_dir) as tmp:
        for name, content in (
            ("compare.md", text + "\n"),
            ("compare.svg", svg),
            ("index.html", page),
        ):
            with open(os.path.join(tmp, name), "w") as fh:
                fh.write(content)


def run(args) -> str:
    from vpr.eval.experiments import commit_params, describe_rev, read_store

    store = read_store(args.repo, args.all_commits, args.workspace, args.rev)
    if not store.runs:
        raise DataError(
            "no finished experiment with per-query results (metrics/eval/<set>.queries.tsv); run e.g. "
            "`dvc exp run --queue -S seed=0,1,2` and `dvc queue start` first"
        )
    runs = [r for r in store.runs if all(s in r.sets for s in args.set or ())]
    if not runs:
        raise DataError(
            f"--set {' '.join(args.set)}: no finished experiment has per-query results of it"
        )
    variants = cmp.group_variants(runs)
    committed = commit_params(args.repo, args.rev)
    baseline = cmp.pick_baseline(variants, args.baseline, committed)
    cmp.label_variants(variants, baseline)
    header = baseline_line(
        baseline, variants, args.baseline, committed, describe_rev(args.repo, args.rev)
    )
    sets = [s for s in cmp.shared_sets(variants) if not args.set or s in args.set]
    if not sets:
        have = sorted({s for r in runs for s in r.sets})
        raise DataError(
            f"no evaluation set is shared by every run (they have {', '.join(have)}); pick one with "
            "--set, which compares only the runs that have it"
        )
    lines, blocks = [], {}
    for s in sets:
        for night in (False, True):
            _, flags, _ = cmp.outcomes(baseline, s, False)
            if night and not flags.any():
                continue
            title = f"{s} (night)" if night else s
            rows = comparison_rows(variants, baseline, s, args.recall_values, night, args.resamples)
            blocks[title] = rows
            lines.append(
                markdown(f"{title}: {rows[0]['queries']} queries", rows, args.recall_values)
            )
    notes = [
        f"{len(runs)} runs in {len(variants)} variants; 95 % intervals from {args.resamples} paired "
        "bootstrap resamples (queries paired, seeds resampled per variant)."
    ]
    notes += resolution_notes(blocks)
    notes += [
        f"{v.label}: dropped repeated runs {', '.join(v.duplicates)} (same params and seed)"
        for v in variants
        if v.duplicates
    ]
    notes += [
        f"{v.label}: one seed, so its interval holds query noise only"
        for v in variants
        if len(v.runs) == 1
    ]
    kinds = {r.environment.get("cpu_capability") for v in variants for r in v.runs} - {None}
    if len(kinds) > 1:
        notes.append(
            f"runs come from CPUs with different kernels ({', '.join(sorted(kinds))}): their float rounding "
            "differs, which adds noise beyond the seeds'; compare runs of one machine kind"
        )
    notes += [
        f"not included ({state.lower()}): {', '.join(names)}"
        for state, names in store.pending.items()
    ]
    if store.stale:
        notes.append(
            "not included (stale: its dvc.lock ran other params than its params.yaml): "
            + "; ".join(f"{name} ({keys})" for name, keys in store.stale.items())
        )
    if store.skipped:
        notes.append(f"not included (no per-query results): {', '.join(store.skipped)}")
    text = "\n\n".join([header] + lines + ["\n".join(f"- {n}" for n in notes)])
    if args.out:
        write_page(args.out, text, figure(blocks))
    return text


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m vpr.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--baseline",
        help="the reference variant: key=value[,key=value] or an experiment name "
        "(default: the variant with the committed params.yaml of --rev, i.e. "
        "HEAD's, not the working copy's that `dvc exp run` rewrites)",
    )
    ap.add_argument(
        "--set",
        action="append",
        help="evaluation set(s) to compare, among the runs that have them "
        "(default: every set all runs share)",
    )
    ap.add_argument(
        "--rev", help="the baseline commit whose experiments to compare (default: HEAD)"
    )
    ap.add_argument(
        "--all-commits", action="store_true", help="experiments of every commit up to --rev too"
    )
    ap.add_argument("--workspace", action="store_true", help="include the workspace's results")
    ap.add_argument("--recall-values", type=int, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--resamples", type=int, default=5000)
    ap.add_argument(
        "--out", help="folder for compare.md, compare.svg and index.html (e.g. reports/compare)"
    )
    ap.add_argument("--repo", default=".", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        print(run(args))
    except VPRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
