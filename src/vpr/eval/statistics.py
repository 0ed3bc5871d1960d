"""Comparing variants with their noise: runs that differ only by ``seed`` form a variant; each variant gets
mean ± std of recall@N over its seeds, and each variant against a baseline the R@1 difference with a 95 %
confidence interval from a paired bootstrap and a verdict (better / worse / within noise).

The bootstrap resamples the queries (the same draw for both variants: paired) and, for each variant, its
seeds; the statistic is the difference of the seed-averaged recalls. So the interval covers both the noise
of a finite query set and the training noise between seeds (with one seed per variant, only the former).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from vpr.errors import DataError

SEED_KEYS = ("seed",)


@dataclass
class Variant:
    label: str
    params: dict  # the shared params (seed excluded)
    runs: list  # vpr.eval.experiments.Run, one per seed
    duplicates: list  # names of runs dropped as repeats of the same params and seed

    @property
    def seeds(self) -> list:
        return [r.params.get("seed", 0) for r in self.runs]


def _key(params: dict) -> str:
    return json.dumps(
        {k: v for k, v in params.items() if k not in SEED_KEYS}, sort_keys=True, default=str
    )


def same_params(a: dict, b: dict) -> bool:
    """Equal params but for the seed."""
    return _key(a) == _key(b)


def group_variants(runs: list) -> list[Variant]:
    """Runs with equal params but for the seed form one variant; a second run of the same params and seed is
    dropped (listed in ``duplicates``)."""
    groups: dict[str, Variant] = {}
    for run in runs:
        v = groups.setdefault(
            _key(run.params),
            Variant("", {k: x for k, x in run.params.items() if k not in SEED_KEYS}, [], []),
        )
        if run.params.get("seed", 0) in v.seeds:
            v.duplicates.append(run.name)
        else:
            v.runs.append(run)
    return list(groups.values())


def pick_baseline(
    variants: list[Variant], selector: str | None = None, reference: dict | None = None
) -> Variant:
    """``selector``: 'key=value[,key=value]' or an experiment name in the variant; else the variant whose
    params equal ``reference`` (e.g. the baseline commit's params.yaml), else the one with most seeds."""
    if selector:
        for v in variants:
            if any(r.name == selector for r in v.runs) or _matches(v.params, selector):
                return v
        raise _no_such_baseline(selector, variants)
    if reference is not None:
        for v in variants:
            if same_params(v.params, reference):
                return v
    return max(variants, key=lambda v: len(v.runs))


def _no_such_baseline(selector: str, variants: list[Variant]) -> DataError:
    """One line: the variants there are (by the keys that tell them apart), and the closest to ``selector``."""
    import difflib

    names = [distinguishing(v, variants) or "all params equal" for v in variants]
    keys = _varying_keys(variants)
    candidates = sorted(
        {_pair(k, v.params.get(k)) for v in variants for k in keys}
        | {r.name for v in variants for r in v.runs}
    )
    close = difflib.get_close_matches(selector, candidates, n=1)
    hint = f" did you mean '{close[0]}'?" if close else ""
    return DataError(
        f"--baseline {selector}: no variant matches;{hint} (variants: {'; '.join(names)}; "
        "or an experiment name)"
    )


def _matches(params: dict, selector: str) -> bool:
    from vpr import dvc_params

    for part in selector.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in params or params[key.strip()] != dvc_params.load(value):
            return False
    return True


def _pair(key: str, value) -> str:
    return f"{key}={value}" if isinstance(value, str) else f"{key}={json.dumps(value, default=str)}"


def _differing(params: dict, base: dict) -> list[str]:
    return sorted(
        k
        for k in set(params) | set(base)
        if params.get(k) != base.get(k) and not k.startswith("data_profiles.")
    )


def _differences(params: dict, base: dict) -> str:
    return ", ".join(_pair(k, params.get(k)) for k in _differing(params, base))


def _varying_keys(variants: list[Variant]) -> list[str]:
    return sorted({k for v in variants for w in variants for k in _differing(v.params, w.params)})


def distinguishing(variant: Variant, variants: list[Variant]) -> str:
    """``variant``'s values of the keys whose value varies across ``variants``, e.g. 'loss=circle'."""
    return ", ".join(_pair(k, variant.params.get(k)) for k in _varying_keys(variants))


def label_variants(variants: list[Variant], baseline: Variant) -> None:
    """Each variant is named by how its params differ from the baseline's."""
    for v in variants:
        v.label = (
            "baseline"
            if v is baseline
            else (_differences(v.params, baseline.params) or "same params")
        )


def outcomes(
    variant: Variant, eval_set: str, night: bool = False
) -> tuple[np.ndarray, np.ndarray, list]:
    """(first-correct ranks (seeds, queries), night flags, query names); a missing rank = no hit (inf)."""
    rows = [r.sets[eval_set] for r in variant.runs]
    names = [q["name"] for q in rows[0]]
    for run, r in zip(variant.runs, rows):
        if [q["name"] for q in r] != names:
            raise DataError(
                f"{run.name}: {eval_set} has other queries than {variant.runs[0].name}; "
                "paired comparisons need the same query set"
            )
    ranks = np.array(
        [[np.inf if q["first_correct"] is None else q["first_correct"] for q in r] for r in rows]
    )
    flags = np.array([q["night"] for q in rows[0]], dtype=bool)
    if night:
        return ranks[:, flags], flags[flags], [n for n, f in zip(names, flags) if f]
    return ranks, flags, names


def recall_summary(ranks: np.ndarray, ns) -> dict:
    """{N: (mean, std over seeds)} of recall@N in percent (std None for a single seed)."""
    out = {}
    for n in ns:
        per_seed = (ranks <= n).mean(1) * 100
        out[n] = (
            float(per_seed.mean()),
            float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None,
        )
    return out


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 5000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Difference of seed-averaged recall (percent) of outcome matrices ``a`` (seeds_a, queries) and ``b``
    (seeds_b, queries) of the same queries, and its ``level`` interval: queries resampled with one draw for
    both (paired), seeds resampled within each variant."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape[1] != b.shape[1]:
        raise ValueError("paired bootstrap needs the same queries on both sides")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, 500):
        size = min(500, resamples - start)
        weights = (
            rng.multinomial(n, np.full(n, 1 / n), size=size).astype(np.float32) / n
        )  # query resampling
        per_a, per_b = weights @ a.T, weights @ b.T  # (size, seeds): recall per seed
        pick_a = rng.integers(len(a), size=(size, len(a)))  # seed resampling
        pick_b = rng.integers(len(b), size=(size, len(b)))
        diffs.append(
            np.take_along_axis(per_a, pick_a, 1).mean(1)
            - np.take_along_axis(per_b, pick_b, 1).mean(1)
        )
    diffs = np.concatenate(diffs) * 100
    tail = (1 - level) / 2 * 100
    return (
        float((a.mean() - b.mean()) * 100),
        float(np.percentile(diffs, tail)),
        float(np.percentile(diffs, 100 - tail)),
    )


def _seed_variance(hits: np.ndarray) -> float:
    """Variance over seeds of recall in percent, for an outcome matrix (seeds, queries)."""
    return float(np.var(hits.mean(1) * 100, ddof=1))


def seeds_to_resolve(
    a: np.ndarray, b: np.ndarray, margin: float = 2.0, z: float = 1.96
) -> int | None:
    """Seeds per variant at which the 95 % interval of the R@1 difference of outcome matrices ``a`` and ``b``
    (seeds, queries) would be about ±``margin`` points: the seed-mean difference has the variance of both
    variants' spread over seeds divided by the seeds, plus the paired query noise, which seeds do not remove.
    None when a variant has one seed (no spread measured) or the query noise alone exceeds ``margin``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    seed_var = _seed_variance(a) + _seed_variance(b)
    query_var = np.var((a.mean(0) - b.mean(0)) * 100, ddof=1) / a.shape[1]
    room = (margin / z) ** 2 - query_var
    return max(2, int(np.ceil(seed_var / room))) if room > 0 else None


def spread_parts(hits: np.ndarray) -> tuple[float, float, float] | None:
    """The std over seeds of recall (percent) of outcome matrix ``hits`` (seeds, queries), split in quadrature
    into the finite query sample's part (queries a seed gets right by chance; more queries shrink it) and the
    part shared by all queries (a better or worse model: only more seeds average it out). None for one seed."""
    hits = np.asarray(hits, np.float64)
    seeds, queries = hits.shape
    if seeds < 2:
        return None
    total = _seed_variance(hits)
    p = hits.mean(0)
    query = (p * (1 - p)).mean() * seeds / (seeds - 1) / queries * 1e4
    return (
        float(np.sqrt(total)),
        float(np.sqrt(min(query, total))),
        float(np.sqrt(max(total - query, 0.0))),
    )


def verdict(low: float, high: float, one_seed: bool = False) -> str:
    """better / worse / within noise; ``one_seed`` (a side has one seed): the interval holds the query noise
    only, not the training noise, which the verdict then says."""
    word = "better" if low > 0 else "worse" if high < 0 else "within noise"
    return f"{word} (one seed: query noise only)" if one_seed else word


def shared_sets(variants: list[Variant]) -> list[str]:
    """Evaluation sets every run has per-query results for, in name order."""
    common = set.intersection(*(set(r.sets) for v in variants for r in v.runs))
    return sorted(common)
