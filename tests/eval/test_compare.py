"""Comparisons with their noise: grouping by seed, mean ± std, paired bootstrap intervals and verdicts."""

import numpy as np
import pytest

from tests.helpers import query_run as _run
from vpr.eval import statistics as cmp
from vpr.eval.experiments import flatten, stale_params


def test_runs_that_differ_only_by_seed_form_one_variant_and_repeats_are_dropped():
    runs = [
        _run("a0", 0, [1]),
        _run("a1", 1, [1]),
        _run("b0", 0, [1], loss="circle"),
        _run("a0-again", 0, [2]),
    ]
    variants = cmp.group_variants(runs)
    assert sorted(len(v.runs) for v in variants) == [1, 2]
    a = next(v for v in variants if v.params["loss"] == "ms")
    assert a.seeds == [0, 1] and a.duplicates == ["a0-again"]
    base = cmp.pick_baseline(variants, reference={"seed": 5, "loss": "circle", "train.epochs": 6})
    assert base.params["loss"] == "circle"
    cmp.label_variants(variants, base)
    assert sorted(v.label for v in variants) == ["baseline", "loss=ms"]
    assert cmp.pick_baseline(variants, "loss=ms") is a and cmp.pick_baseline(variants, "b0") is base


def test_mean_and_std_over_seeds_of_each_recall():
    ranks = np.array([[1, 2, None, 7], [1, 1, 3, None]], dtype=object)
    ranks = np.where(ranks == None, np.inf, ranks).astype(float)  # noqa: E711
    s = cmp.recall_summary(ranks, [1, 5])
    assert s[1] == pytest.approx((37.5, np.std([25, 50], ddof=1)))
    assert s[5] == pytest.approx((62.5, np.std([50, 75], ddof=1)))
    assert cmp.recall_summary(ranks[:1], [1])[1] == (25.0, None)


def test_bootstrap_interval_is_centred_on_the_difference_and_shrinks_with_more_queries():
    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 3200):
        truth = rng.random(n)
        a = rng.random((3, n)) < truth + 0.05  # variant: 5 points better on the same queries
        b = rng.random((3, n)) < truth
        diff, low, high = cmp.paired_bootstrap(a, b, resamples=2000)
        assert low < diff < high and diff == pytest.approx((a.mean() - b.mean()) * 100)
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5  # ~ 1/sqrt(16) = 1/4 of the width


def test_verdicts_follow_the_interval():
    assert cmp.verdict(0.4, 3.0) == "better" and cmp.verdict(-3.0, -0.1) == "worse"
    assert cmp.verdict(-0.5, 2.0) == "within noise"


def test_identical_variants_are_within_noise_and_a_large_gain_is_better():
    rng = np.random.default_rng(1)
    b = rng.random((3, 2000)) < 0.4
    assert cmp.verdict(*cmp.paired_bootstrap(b.copy(), b, 1000)[1:]) == "within noise"
    better = b | (rng.random((3, 2000)) < 0.1)  # ~6 points more, on the same queries
    assert cmp.verdict(*cmp.paired_bootstrap(better, b, 1000)[1:]) == "better"


def test_seed_noise_widens_the_interval():
    """Two variants whose seeds disagree a lot (training noise) get a wider interval than steady ones."""
    rng = np.random.default_rng(2)
    truth = rng.random(1000) < 0.4
    steady = np.array([truth] * 3)
    noisy = np.array([truth ^ (rng.random(1000) < p) for p in (0.02, 0.2, 0.4)])
    _, lo1, hi1 = cmp.paired_bootstrap(steady, steady, 2000)
    _, lo2, hi2 = cmp.paired_bootstrap(noisy, steady, 2000)
    assert hi2 - lo2 > 2 * (hi1 - lo1)


def test_night_outcomes_are_the_night_queries_only():
    v = cmp.group_variants([_run("a", 0, [1, None, 2], night=[0, 1, 1])])[0]
    ranks, flags, names = cmp.outcomes(v, "city", night=True)
    assert names == ["q1.jpg", "q2.jpg"] and ranks.tolist() == [[np.inf, 2]]


def test_runs_on_other_queries_cannot_be_paired():
    from vpr.errors import DataError

    a, b = _run("a", 0, [1, 2]), _run("b", 1, [1, 2])
    b.sets["city"][1]["name"] = "other.jpg"
    with pytest.raises(DataError, match="other queries"):
        cmp.outcomes(cmp.group_variants([a, b])[0], "city")


def test_params_are_flattened_to_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": {},
    }


def test_a_commit_whose_lock_ran_other_params_is_stale():
    params = flatten(
        {"backbone": "lite", "backbones": {"lite": {"freeze": 3}}, "seed": 0, "augment": []}
    )
    lock = """stages:
  train:
    params:
      params.yaml:
        backbone: {backbone}
        backbones:
          lite: {{freeze: 3}}
        seed: 0
        augment: []
"""
    assert stale_params(lock.format(backbone="lite"), params) == []
    assert stale_params(lock.format(backbone="resnet18"), params) == ["backbone"]
    assert stale_params(lock.format(backbone="lite").replace("seed: 0", "seed: 1"), params) == [
        "seed"
    ]
    assert stale_params(None, params) == []  # no lock: nothing to check against


def test_lock_entries_of_stages_the_params_no_longer_make_are_not_staleness():
    """DVC keeps an evaluation set's stages in dvc.lock after the set leaves data.test (e.g. a data profile
    switch, synth_test -> cambridge_test): their params are not what this commit's stages ran."""
    params = flatten(
        {
            "data": {"test": {"cambridge_test": "cambridge_sv/test"}, "fetch": ["cambridge_sv"]},
            "extract": {"checkpoint": "last"},
        }
    )
    lock = """stages:
  extract@synth_test:
    params:
      params.yaml:
        extract: {checkpoint: best}
  extract@cambridge_test:
    params:
      params.yaml:
        extract: {checkpoint: %s}
  fetch@synth:
    params:
      params.yaml:
        data.fetch: [synth]
"""
    dvc_yaml = """stages:
  fetch:
    foreach: ${data.fetch}
    do: {cmd: x}
  extract:
    foreach: ${data.test}
    do: {cmd: x}
"""
    assert stale_params(lock % "last", params, dvc_yaml) == []
    assert stale_params(lock % "best", params, dvc_yaml) == ["extract.checkpoint"]


def _seeds_with_model_noise(rng, truth, seeds, spread):
    """Outcomes of ``seeds`` trainings: each seed shifts every query's hit probability by one draw of
    N(0, spread) (training noise shared by all queries), then each query is a coin flip."""
    shifts = rng.normal(0, spread, size=(seeds, 1))
    return rng.random((seeds, len(truth))) < np.clip(truth + shifts, 0, 1)


def test_seeds_to_resolve_a_margin_gives_an_interval_of_about_that_margin():
    rng = np.random.default_rng(3)
    truth = rng.random(1500) * 0.6
    a, b = (
        _seeds_with_model_noise(rng, truth, 12, 0.02) for _ in range(2)
    )  # 2 points of seed spread each
    n = cmp.seeds_to_resolve(a, b, margin=2.0)
    assert 5 <= n <= 16  # (1.96/2)^2 * 2 * 2^2 = 7.7 + the query part
    halves = []
    for _ in range(6):  # fresh trainings with that many seeds per variant
        a, b = (_seeds_with_model_noise(rng, truth, n, 0.02) for _ in range(2))
        _, low, high = cmp.paired_bootstrap(a, b, 1000)
        halves.append((high - low) / 2)
    assert 1.3 < np.mean(halves) < 2.6


def test_seeds_to_resolve_grows_with_the_spread_and_needs_a_measured_one():
    rng = np.random.default_rng(4)
    truth = rng.random(1500) * 0.6
    steady = [_seeds_with_model_noise(rng, truth, 5, 0.005) for _ in range(2)]
    noisy = [_seeds_with_model_noise(rng, truth, 5, 0.04) for _ in range(2)]
    assert cmp.seeds_to_resolve(*steady) < cmp.seeds_to_resolve(*noisy)
    assert cmp.seeds_to_resolve(steady[0][:1], steady[1]) is None  # one seed: no spread measured
    few = [_seeds_with_model_noise(rng, truth[:100], 5, 0.0) for _ in range(2)]
    assert (
        cmp.seeds_to_resolve(*few, margin=2.0) is None
    )  # 100 queries: the query noise alone is wider


def test_the_spread_over_seeds_splits_into_query_sample_and_training_parts():
    rng = np.random.default_rng(6)
    truth = rng.random(4000) * 0.6
    shared = [cmp.spread_parts(_seeds_with_model_noise(rng, truth, 12, 0.03))[2] for _ in range(5)]
    assert 2.0 < np.median(shared) < 4.0  # the 3-point training shift shared by every query
    total, query, shared = cmp.spread_parts(_seeds_with_model_noise(rng, truth, 12, 0.0))
    expected = np.sqrt((truth * (1 - truth)).mean() / 4000) * 100  # coin flips alone: ~0.66 points
    assert abs(query - expected) < 0.25 and shared < 0.5 and query <= total
    assert cmp.spread_parts(np.ones((1, 10))) is None


def test_a_within_noise_verdict_says_how_many_seeds_would_resolve_two_points():
    from vpr.compare import comparison_rows, resolution_notes

    rng = np.random.default_rng(5)
    truth = rng.random(1500) * 0.6
    runs = [
        _run(f"{loss}{s}", s, [1 if hit else None for hit in hits], loss=loss)
        for loss in ("ms", "circle")
        for s, hits in enumerate(_seeds_with_model_noise(rng, truth, 4, 0.02))
    ]
    variants = cmp.group_variants(runs)
    base = cmp.pick_baseline(variants, "loss=ms")
    cmp.label_variants(variants, base)
    rows = comparison_rows(variants, base, "city", [1], False, 1000)
    assert rows[1]["verdict"] == "within noise" and rows[1]["seeds_needed"] >= 4
    notes = resolution_notes({"city": rows})
    assert (
        notes[0].startswith("city, baseline: its R@1 spread over 4 seeds, std ")
        and "in quadrature" in notes[0]
    )
    assert notes[1:] == [
        f"city, loss=circle: within noise; about {rows[1]['seeds_needed']} seeds per variant would narrow the "
        "interval to ±2 R@1 (from the spread measured)"
    ]
    one_seed = dict(rows[1], seeds=[0], seeds_needed=None)
    few_queries = dict(rows[1], queries=100, seeds_needed=None)
    assert resolution_notes({"city": [rows[0], one_seed, few_queries]})[1:] == [
        "city, loss=circle: within noise; a side has one seed, so the spread over seeds is unmeasured: run more seeds",
        "city, loss=circle: within noise; the query noise alone exceeds ±2 R@1 on 100 queries: more queries are "
        "needed, not seeds",
    ]


def test_a_run_reads_only_the_sets_its_params_test_not_results_left_from_a_former_set(tmp_path):
    """After a data profile switch the former set's queries.tsv stays tracked in git: it is not this run's."""
    import subprocess

    import yaml

    from vpr.eval.experiments import load_run

    tsv = "query\tname\tnight\tpositives\tfirst_correct\ttop\n0\tq.jpg\t0\t1\t1\t0 1\n"
    (tmp_path / "metrics" / "eval").mkdir(parents=True)
    for name in ("synth_test", "cambridge_test"):
        (tmp_path / "metrics" / "eval" / f"{name}.queries.tsv").write_text(tsv)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"seed": 0, "data": {"test": {"cambridge_test": "c/test"}}})
    )
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "run"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True)
    assert list(load_run(str(tmp_path), "run", "HEAD").sets) == ["cambridge_test"]
