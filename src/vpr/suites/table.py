"""A suite's table from the experiment store: one row per variant, per evaluation set (and its night queries)
the mean ± std over seeds of each R@N and the R@1 difference to the baseline with its 95 % interval and
verdict. The statistics are vpr.compare's (comparison_rows: recall_summary, paired_bootstrap, verdict); this
module only gathers each row's runs (by the suite's plan, not by guessing) and says what the table rests on."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import yaml

from vpr.errors import DataError


@dataclass
class Table:
    meta: dict  # suite, question, profile, budget, seeds, cpu, commit, date, ...
    columns: list  # block titles: '<set>' and '<set> (night)'
    recalls: list  # N of the R@N columns
    rows: list  # {variant, changes, seeds, note, cells: {block: {...}}}
    notes: list = field(default_factory=list)
    blocks: dict = field(
        default_factory=dict
    )  # block -> vpr.compare.comparison_rows (for the figure)


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def changes(plan, name: str) -> str:
    """The variant's own overrides as key=value (what tells its row apart; the profile's are in the header)."""
    v = plan.suite.variant(name)
    items = {**v.overrides, **v.extra(plan.profile)}
    return ", ".join(f"{k}={shown(x)}" for k, x in items.items()) or "—"


def shown(value) -> str:
    """A value as a reader writes it: strings bare, the rest as flow YAML."""
    if isinstance(value, str):
        return value
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10**6)
        .strip()
        .removesuffix("...")
        .strip()
    )


def row_variants(plan, status) -> tuple[list, list]:
    """vpr.eval.statistics.Variant per row that has runs (runs sorted by seed: the bootstrap is then independent of
    the store's order), and the planned runs not in the store."""
    from vpr.eval.statistics import Variant

    variants, missing = [], []
    for v in plan.suite.variants:
        if v.name in plan.skipped:
            continue
        planned = [r for r in plan.runs if r.variant == v.name]
        runs = sorted(
            (status.done[r.name] for r in planned if r.name in status.done),
            key=lambda r: r.params["seed"],
        )
        missing += [r.name for r in planned if r.name not in status.done]
        if runs:
            variants.append(
                Variant(v.name, {k: x for k, x in runs[0].params.items() if k != "seed"}, runs, [])
            )
    return variants, missing


def _older_baselines(repo: str, variants) -> str:
    """'; runs made on commits X, Y' when some runs (read with --all-commits) come from earlier commits: an
    experiment's commit has its baseline commit as parent."""
    from vpr.eval.experiments import _git

    head = (_git(repo, "rev-parse", "--short", "HEAD") or "").strip()
    bases = set()
    for r in (r for v in variants for r in v.runs):
        rev = r.rev if r.rev != r.name else None  # a commit's own results: that commit
        base = (
            _git(repo, "rev-parse", "--short", f"{rev}^" if rev else f"{r.name}^{{commit}}") or ""
        ).strip()
        if base and r.rev != "workspace":
            bases.add(base)
    older = sorted(bases - {head})
    return f"; runs made on earlier commits too: {', '.join(older)}" if older else ""


def _cpu(variants) -> str:
    kinds = sorted(
        {r.environment.get("cpu_capability") or "unknown" for v in variants for r in v.runs}
    )
    try:
        import torch

        here = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - the table does not need torch; say so instead
        here = "unknown (torch not importable)"
    return f"{', '.join(kinds)} (the runs' torch.backends.cpu.get_cpu_capability(); this machine: {here})"


def build(
    plan, status, repo: str = ".", resamples: int = 5000, profile=None, budget: dict | None = None
) -> Table:
    """The table of ``plan`` from the runs ``status`` found (vpr.suites.store.match)."""
    from vpr import compare as vc
    from vpr.eval import statistics as cmp
    from vpr.eval.experiments import describe_rev

    suite = plan.suite
    variants, missing = row_variants(plan, status)
    if not variants or variants[0].label != suite.baseline:
        raise DataError(
            f"suite '{suite.name}' on {plan.profile}: no finished run of the baseline '{suite.baseline}' "
            f"in the experiment store yet; run `python -m vpr.suites run {suite.name}"
            f"{'' if plan.profile == suite.data else ' --data ' + plan.profile}` first"
        )
    baseline, blocks = variants[0], {}
    for s in cmp.shared_sets(variants):
        for night in (False, True):
            if night and not (suite.night and cmp.outcomes(baseline, s, False)[1].any()):
                continue
            blocks[f"{s} (night)" if night else s] = vc.comparison_rows(
                variants, baseline, s, list(suite.recalls), night, resamples
            )
    rows = _rows(plan, variants, blocks, suite.recalls)
    meta = dict(
        suite=suite.name,
        question=suite.question,
        profile=plan.profile,
        seeds=list(plan.seeds),
        baseline=suite.baseline,
        budget=budget or {},
        resamples=resamples,
        minutes=getattr(profile, "minutes", None),
        note=getattr(profile, "note", ""),
        cpu=_cpu(variants),
        commit=describe_rev(repo, None) + _older_baselines(repo, variants),
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    queries = {title: rs[0]["queries"] for title, rs in blocks.items()}
    return Table(
        meta,
        list(blocks),
        list(suite.recalls),
        rows,
        _notes(plan, status, variants, blocks, missing, queries),
        blocks,
    )


def _rows(plan, variants, blocks: dict, recalls) -> list:
    rows = []
    for v in variants:
        cells = {}
        for title, block in blocks.items():
            r = next(x for x in block if x["variant"] == v.label)
            cell = {f"R@{n}": _fmt(*r["summary"][n]) for n in recalls}
            if "diff" in r:
                cell.update(
                    delta=f"{r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]",
                    verdict=r["verdict"],
                )
            cells[title] = cell
        rows.append(
            dict(
                variant=v.label,
                changes=changes(plan, v.label),
                seeds=v.seeds,
                note=plan.suite.variant(v.label).note,
                cells=cells,
            )
        )
    return rows


def _notes(plan, status, variants, blocks: dict, missing: list, queries: dict) -> list:
    from vpr import compare as vc

    notes = [f"{title}: {n} queries" for title, n in queries.items()]
    notes += vc.resolution_notes(blocks)
    notes += [f"{r['variant']}: {r['note']}" for r in _row_notes(plan, variants)]
    notes += [f"{name}: {why}" for name, why in plan.skipped.items()]
    if missing:
        notes.append(f"not in the store yet ({len(missing)}): {', '.join(missing)}")
    kinds = {r.environment.get("cpu_capability") for v in variants for r in v.runs} - {None}
    if len(kinds) > 1:
        notes.append(
            f"runs come from CPUs with different kernels ({', '.join(sorted(kinds))}): their float rounding "
            "differs, which adds noise beyond the seeds'; compare runs of one machine kind"
        )
    found_as = {name: run.name for name, run in status.done.items() if run.name != name}
    if found_as:
        notes.append(
            "found under another name (same params and seed): "
            + ", ".join(f"{k} = {v}" for k, v in sorted(found_as.items()))
        )
    return notes


def _row_notes(plan, variants) -> list:
    return [
        dict(variant=v.label, note=plan.suite.variant(v.label).note)
        for v in variants
        if plan.suite.variant(v.label).note
    ]
