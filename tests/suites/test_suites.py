"""Research suites (python -m vpr.suites): the definitions validate against the params schema on every profile,
the dry run lists the runs, runs already in the experiment store are not queued again, the table's cells are
vpr.compare's statistics, outputs are written atomically, mistakes are one line; end to end on the miniature
city, and across two clones sharing one store through a bare Git remote and a local DVC remote (slow)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, copy_repo, dvc, run_checked
from vpr import dvc_params
from vpr.errors import ConfigError
from vpr.eval.experiments import Run, Store, flatten
from vpr.suites import cli, render
from vpr.suites import plan as P
from vpr.suites import spec as S
from vpr.suites import store as St
from vpr.suites import table as T

DEFS = S.load()
PARAMS_TEXT = (ROOT / "params.yaml").read_text()
PARAMS = yaml.safe_load(PARAMS_TEXT)


def _profiles_of(suite):
    return [
        p
        for p in DEFS.profiles
        if any(v.runs_on(p) for v in suite.variants if v.name != suite.baseline)
    ]


# ------------------------------------------------------------------------------------------ definitions


@pytest.mark.parametrize("name", sorted(DEFS.suites))
def test_every_variant_of_every_suite_validates_on_each_of_its_profiles(name):
    """Each run's params, as `dvc exp run -S` writes them (DVC's own function), pass the params schema, and each
    override lands as the value the definitions give it."""
    suite = DEFS.suites[name]
    assert suite.question.endswith("?") and len(suite.variants) >= 2
    for profile in _profiles_of(suite):
        plan = P.make_plan(DEFS, suite, profile, [1], PARAMS_TEXT, str(ROOT), check=True)
        assert plan.runs, profile
        for run in plan.runs:
            v = suite.variant(run.variant)
            wanted = P.variant_overrides(DEFS, suite, v, profile, run.seed)
            for key, value in wanted.items():
                assert run.params[key] == value, (profile, run.name, key)
            assert run.params["seed"] == 1
            if profile != "synth":
                assert run.params[
                    "data.test." + next(iter(PARAMS["data_profiles"][profile]["test"]))
                ]


def test_the_baseline_row_of_a_default_suite_is_the_committed_params():
    """Resumability starts at home: the default suites' baseline at seed 0 is exactly HEAD's params."""
    committed = flatten(PARAMS)
    for name in ("losses", "test_time", "smoke", "adaptation"):
        run = P.make_plan(
            DEFS, DEFS.suites[name], "synth", [0], PARAMS_TEXT, str(ROOT), check=False
        ).runs[0]
        assert run.params == committed, name


def test_the_real_profile_runs_the_recipe_at_the_suite_budget():
    plan = P.make_plan(
        DEFS, DEFS.suites["losses"], "cambridge", [0], PARAMS_TEXT, str(ROOT), check=False
    )
    params = plan.runs[0].params
    assert params["train.epochs"] == DEFS.profiles["cambridge"].budget["train.epochs"] < 10
    assert params["train.image_size"] == [160, 160] and params["data.train"] == "cambridge_sv/train"
    assert plan.runs[0].items[0] == "data=${data_profiles.cambridge}"


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        0.0003,
        1000000.0,
        "synth/mining",
        "R@5",
        "none",
        "it's",
        [0.8, 1.0, 1.25],
        [{"name": "color_jitter", "hue": 0.1}, {"name": "random_erasing"}],
        {"experiment": "test_time-circle-s1"},
        [],
    ],
)
def test_values_reach_params_yaml_unchanged_through_dvc_overrides(tmp_path, value):
    text = "a: 0\nb: {c: 1}\n"
    raw = P.apply_items(
        text, [f"a={dvc_params.hydra_value(value)}", f"b.c={dvc_params.hydra_value(value)}"]
    )
    assert raw["a"] == value and raw["b"]["c"] == value


def test_a_small_learning_rate_dvc_writes_as_1e_05_reaches_the_stages_as_a_number(tmp_path):
    """DVC writes 1e-05 as `1e-05`, which PyYAML's YAML 1.1 reads as a string; the project reads params.yaml
    with YAML 1.2's floats (vpr.dvc_params), so the variant plans and validates."""
    path = _defs(
        tmp_path,
        "suites:\n  s:\n    question: Q?\n    baseline: a\n"
        "    variants: {a: {}, b: {optimizers.adam.lr: 0.00001}}\n",
    )
    defs = S.load(str(path))
    plan = P.make_plan(defs, defs.suites["s"], "synth", [0], PARAMS_TEXT)
    (run,) = [r for r in plan.runs if r.variant == "b"]
    raw = P.apply_items(PARAMS_TEXT, run.items)
    assert raw["optimizers"]["adam"]["lr"] == 1e-05 and isinstance(
        raw["optimizers"]["adam"]["lr"], float
    )


def test_a_variant_with_its_own_data_keys_replaces_the_whole_data_section_of_another_profile():
    items = P.cli_items({"data.mining": "cambridge_sv/val"}, "cambridge", PARAMS, 2)
    assert items[:2] == ["~data", items[1]] and items[1].startswith("+data={fetch: [cambridge_sv]")
    raw = P.apply_items(PARAMS_TEXT, items)
    assert raw["data"]["mining"] == "cambridge_sv/val" and raw["data"]["test"] == {
        "cambridge_test": "cambridge_sv/test"
    }
    assert P.cli_items({"data.mining": "synth/mining"}, "synth", PARAMS, 0) == [
        "data.mining=synth/mining",
        "seed=0",
    ]


def _defs(tmp_path, text: str) -> Path:
    path = tmp_path / "suites.yaml"
    path.write_text("profiles:\n  synth: {minutes: 3}\n  cambridge: {recipe: real_photos}\n" + text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "suites:\n  s:\n    question: Q?\n    basline: a\n    variants: {a: {}, b: {loss: circle}}\n",
            "suite 's': basline: unknown key",
        ),
        (
            "suites:\n  s:\n    question: Q?\n    baseline: c\n    variants: {a: {}, b: {loss: circle}}\n",
            "suite 's': baseline: expected the name of one of its variants (a, b), got 'c'",
        ),
        (
            "suites:\n  s:\n    question: Q?\n    baseline: a\n    variants: {a: {}, b: {loss: circle, _cots: 2}}\n",
            "suite 's': variants.b._cots: unknown key",
        ),
        (
            "suites:\n  s:\n    question: Q?\n    baseline: a\n    variants: {a: {}, B-1: {}}\n",
            "suite 's': variants.B-1: variant names are lower-case letters",
        ),
        (
            "suites:\n  s:\n    question: Q?\n    baseline: a\n    seeds: 0\n    variants: {a: {}, b: {loss: circle}}\n",
            "suite 's': seeds: expected a number of seeds >= 1, got 0",
        ),
        (
            "suites:\n  s:\n    baseline: a\n    variants: {a: {}, b: {}}\n",
            "suite 's': question: say which question",
        ),
    ],
)
def test_a_bad_definition_is_one_line_naming_the_suite_and_key(tmp_path, capsys, text, message):
    path = _defs(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        S.load(str(path))
    assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}")
    assert cli.main(["--file", str(path), "list"]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith(f"error: {path}: {message}")


def test_an_override_the_schema_refuses_is_one_line_naming_suite_variant_and_key(tmp_path, capsys):
    path = _defs(
        tmp_path,
        "suites:\n  s:\n    question: Q?\n    baseline: a\n    variants: {a: {}, b: {loss: circel}}\n",
    )
    assert cli.main(["--file", str(path), "--repo", str(ROOT), "run", "s", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: suite 's', variant 'b' on synth: loss: unknown name 'circel'; did you mean 'circle'? "
        "(allowed: contrastive, triplet, multisimilarity, circle, ntxent, supcon, fastap, cosface, arcface, "
        "proxy_anchor)"
    ]


def test_an_unknown_suite_or_profile_is_one_line_and_exit_2(capsys):
    assert cli.main(["run", "losess", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no suite 'losess'; did you mean 'losses'?")
    assert cli.main(["--repo", str(ROOT), "run", "losses", "--data", "moon", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data moon: no profile 'moon'" in err[0]
    proc = subprocess.run(
        [sys.executable, "-m", "vpr.suites", "table", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- planning


def _git_repo(tmp_path) -> Path:
    """A git repository holding this checkout's params.yaml (committed), no DVC: the store cannot be read."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    for args in (
        ["init", "-q"],
        ["add", "params.yaml"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def test_the_dry_run_lists_every_run_with_its_overrides_and_runs_nothing(
    tmp_path, capsys, monkeypatch
):
    repo = _git_repo(tmp_path)
    monkeypatch.setattr(
        "vpr.suites.runner.dvc", lambda *a, **k: pytest.fail("the dry run called dvc")
    )
    assert cli.main(["--repo", str(repo), "run", "test_time", "--seeds", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  test_time-")]
    variants = [v.name for v in DEFS.suites["test_time"].variants]
    assert names == [
        f"test_time-{v}-s{s}" for s in (0, 1) for v in variants if v != "ensemble_circle"
    ] + [f"test_time-ensemble_circle-s{s}" for s in (0, 1)]  # after the models it reads
    assert "18 runs = 9 variants x 2 seeds" in out and "dvc queue start -j" in out
    assert re.search(
        r"\n  test_time-multiscale-s1 +extract\.scales=\[0\.8, 1\.0, 1\.25\], seed=1\n", out
    )
    assert (
        "extract.ensemble=[{experiment: '{suite}-circle-s{seed}'}], seed=0  (after circle)" in out
    )


def test_optimizer_grid_is_every_combination_named_by_its_labels():
    names = [v.name for v in DEFS.suites["optimizers"].variants]
    assert len(names) == 16 and names[0] == "adam-multistep" and "asgd-plateau" in names
    v = DEFS.suites["optimizers"].variant("sgd-cosine")
    assert v.overrides == {
        "optimizer": "sgd",
        "optimizers.sgd.lr": 0.01,
        "optimizers.sgd.momentum": 0.9,
        "scheduler": "cosine",
    }


def test_variants_that_need_another_profiles_data_are_skipped_there_and_said_so():
    plan = P.make_plan(
        DEFS, DEFS.suites["methods"], "cambridge", [0], PARAMS_TEXT, str(ROOT), check=False
    )
    assert "triplet_mining" in plan.skipped and {r.variant for r in plan.runs} == {
        "places",
        "cosplace",
    }


# ------------------------------------------------------------------------------------------ the store


def _runs_of(plan, names, ranks_by_name, night=None):
    """Store runs with the planned params of ``names`` (as DVC would have run them) and given first-correct ranks."""
    out = []
    for r in plan.runs:
        if r.name in names:
            rows = [
                dict(
                    query=i,
                    name=f"q{i}.jpg",
                    night=int(bool(night[i])) if night else 0,
                    positives=1,
                    first_correct=k,
                    top=[],
                )
                for i, k in enumerate(ranks_by_name[r.name])
            ]
            out.append(
                Run(
                    r.name, r.name, dict(r.params), {"synth_test": rows}, {"cpu_capability": "AVX2"}
                )
            )
    return out


def _smoke_plan(seeds=(0, 1)):
    return P.make_plan(
        DEFS, DEFS.suites["smoke"], "synth", list(seeds), PARAMS_TEXT, str(ROOT), check=False
    )


def test_runs_in_the_store_or_in_the_queue_are_not_queued_again(tmp_path, monkeypatch, capsys):
    plan = _smoke_plan()
    ranks = {r.name: [1] * 4 for r in plan.runs}
    head = _runs_of(plan, {"smoke-default-s0"}, ranks)[0]
    head.name = "main"  # the baseline commit: same params, another name
    store = Store(
        [head] + _runs_of(plan, {"smoke-circle-s0"}, ranks),
        {"Queued": ["smoke-default-s1"], "Failed": ["smoke-circle-s1"]},
        [],
    )
    status = St.match(plan, store)
    assert (
        set(status.done) == {"smoke-default-s0", "smoke-circle-s0"}
        and status.done["smoke-default-s0"] is head
    )
    assert status.waiting == {"smoke-default-s1": "Queued"} and [r.name for r in status.todo] == [
        "smoke-circle-s1"
    ]
    assert status.failed == ["smoke-circle-s1"]
    calls = []
    monkeypatch.setattr(St, "read", lambda *a: store)
    monkeypatch.setattr(St, "check_workspace", lambda *a: [])
    monkeypatch.setattr(St, "head_params_text", lambda *a: PARAMS_TEXT)
    monkeypatch.setattr("vpr.suites.runner.dvc", lambda repo, *args, **k: calls.append(args) or "")
    monkeypatch.setattr(
        "vpr.suites.runner.finished", lambda repo, names: set(names)
    )  # saved as experiments
    monkeypatch.setattr(cli, "_table", lambda *a: 0)
    assert cli.main(["--repo", str(ROOT), "run", "smoke", "--jobs", "1"]) == 0
    queued = [c for c in calls if c[:2] == ("exp", "run")]
    assert (
        len(queued) == 1
        and queued[0][:4] == ("exp", "run", "--queue", "-n")
        and queued[0][4] == "smoke-circle-s1"
    )
    assert ("queue", "remove", "smoke-circle-s1") in calls and (
        "queue",
        "start",
        "-j",
        "1",
    ) in calls
    assert "2 in the store, 1 already queued, 1 to run here" in capsys.readouterr().out


def test_a_run_of_other_params_under_the_same_name_is_not_taken_for_it():
    plan = _smoke_plan([0])
    ranks = {r.name: [1] * 4 for r in plan.runs}
    stale = _runs_of(plan, {"smoke-circle-s0"}, ranks)[0]
    stale.params["train.epochs"] = 99
    status = St.match(plan, Store([stale], {}, []))
    assert [r.name for r in status.todo] == ["smoke-default-s0", "smoke-circle-s0"]
    assert status.conflicts == {
        "smoke-circle-s0": ["train.epochs"]
    }  # run under its name: refused, said why
    assert "dvc exp remove smoke-circle-s0" in str(St.conflict_error(status.conflicts))


def test_a_worker_that_stopped_with_runs_queued_is_started_again(monkeypatch, tmp_path):
    """DVC's queue worker can stop on a half-written message of its own broker (DVC issue #10428), leaving the
    runs queued forever: the wait notices (no live worker, runs queued) and starts it again."""
    from vpr.suites import runner as R

    alive = R.workers_alive
    saved = iter([set(), set(), set(), set(), {"x"}])  # two looks per poll while none runs
    monkeypatch.setattr(R, "finished", lambda repo, names: next(saved))
    monkeypatch.setattr(R, "queue_states", lambda repo: {"x": "Queued"})
    monkeypatch.setattr(R, "workers_alive", lambda repo: False)
    monkeypatch.setattr(R.time, "sleep", lambda s: None)
    restarted, lines = [], []
    assert R.wait(
        str(tmp_path), ["x"], R.Timing(), lines.append, restart=lambda: restarted.append(1)
    ) == {"x": "Success"}
    assert (
        len(restarted) == 2
        and "DVC issue #10428" in lines[0]
        and lines[-1].startswith("[1/1] x: Success")
    )
    info = tmp_path / ".dvc/tmp/exps/celery"
    info.mkdir(parents=True)
    (info / "dvc-exp-worker-1.json").write_text(
        json.dumps({"pid": os.getpid(), "returncode": None})
    )
    assert alive(str(tmp_path))
    (info / "dvc-exp-worker-1.json").write_text(json.dumps({"pid": os.getpid(), "returncode": 0}))
    assert not alive(str(tmp_path))


def test_shards_split_the_seeds_between_machines(monkeypatch, capsys):
    plan_store = Store([], {}, [])
    monkeypatch.setattr(St, "read", lambda *a: plan_store)
    monkeypatch.setattr(St, "check_workspace", lambda *a: [])
    calls = []
    monkeypatch.setattr("vpr.suites.runner.dvc", lambda repo, *args, **k: calls.append(args) or "")
    monkeypatch.setattr("vpr.suites.runner.finished", lambda repo, names: set(names))
    monkeypatch.setattr(cli, "_table", lambda *a: 0)
    assert cli.main(["--repo", str(ROOT), "run", "smoke", "--seeds", "3", "--shard", "2/2"]) == 0
    assert [c[4] for c in calls if c[:2] == ("exp", "run")] == [
        "smoke-default-s1",
        "smoke-circle-s1",
    ]
    assert cli.main(["--repo", str(ROOT), "run", "smoke", "--shard", "3/2"]) == 2


# ------------------------------------------------------------------------------------------ the table


def test_cells_are_mean_and_std_over_seeds_and_verdicts_are_vpr_compares(monkeypatch):
    from vpr import compare as vc
    from vpr.eval import statistics as cmp

    plan = _smoke_plan()
    n = 40
    night = [i % 4 == 0 for i in range(n)]
    ranks = {
        "smoke-default-s0": [1] * 20 + [None] * 20,
        "smoke-default-s1": [1] * 30 + [7] * 10,  # R@1 50, 75
        "smoke-circle-s0": [1] * 36 + [3] * 4,
        "smoke-circle-s1": [1] * 38 + [None] * 2,
    }  # R@1 90, 95
    store = Store(
        list(reversed(_runs_of(plan, set(ranks), ranks, night))), {}, []
    )  # order must not matter
    t = T.build(plan, St.match(plan, store), str(ROOT), resamples=400)
    assert t.columns == ["synth_test", "synth_test (night)"] and t.recalls == [1, 5]
    base, circle = t.rows
    assert (
        base["variant"] == "default"
        and base["seeds"] == [0, 1]
        and circle["changes"] == "loss=circle"
    )
    assert base["cells"]["synth_test"]["R@1"] == f"62.5 ± {np.std([50, 75], ddof=1):.1f}"
    assert circle["cells"]["synth_test"]["R@1"] == f"92.5 ± {np.std([90, 95], ddof=1):.1f}"
    variants = [
        cmp.Variant(
            v,
            {},
            sorted(
                [r for r in store.runs if r.name.startswith(f"smoke-{v}-")],
                key=lambda r: r.params["seed"],
            ),
            [],
        )
        for v in ("default", "circle")
    ]
    for night_only, title in ((False, "synth_test"), (True, "synth_test (night)")):
        want = vc.comparison_rows(variants, variants[0], "synth_test", [1, 5], night_only, 400)[1]
        cell = circle["cells"][title]
        assert cell["delta"] == f"{want['diff']:+.1f} [{want['low']:+.1f}, {want['high']:+.1f}]"
        assert cell["verdict"] == want["verdict"] and cell["R@5"] == T._fmt(*want["summary"][5])
    assert (
        "cpu" in t.meta
        and t.meta["cpu"].startswith("AVX2 (")
        and t.meta["commit"].startswith("HEAD ")
    )


def test_missing_runs_are_listed_and_a_table_without_its_baseline_says_what_to_run():
    plan = _smoke_plan()
    ranks = {r.name: [1, 2, None, 1] for r in plan.runs}
    t = T.build(
        plan,
        St.match(
            plan, Store(_runs_of(plan, {"smoke-default-s0", "smoke-circle-s0"}, ranks), {}, [])
        ),
        str(ROOT),
        resamples=100,
    )
    assert "not in the store yet (2): smoke-default-s1, smoke-circle-s1" in t.notes
    assert (
        all(r["seeds"] == [0] for r in t.rows)
        and "one seed" in t.rows[1]["cells"]["synth_test"]["verdict"]
    )
    with pytest.raises(Exception) as err:
        T.build(
            plan,
            St.match(plan, Store(_runs_of(plan, {"smoke-circle-s0"}, ranks), {}, [])),
            str(ROOT),
        )
    assert "no finished run of the baseline 'default'" in str(
        err.value
    ) and "python -m vpr.suites run smoke" in str(err.value)


def _table(resamples=100):
    plan = _smoke_plan()
    ranks = {r.name: [1, 2, None, 1, 3, 1] for r in plan.runs}
    return T.build(
        plan, St.match(plan, Store(_runs_of(plan, set(ranks), ranks), {}, [])), str(ROOT), resamples
    )


def test_markdown_latex_and_html_say_what_the_table_rests_on(tmp_path):
    t = _table()
    md, tex, page = render.markdown(t), render.latex(t), render.page(t, "<svg></svg>")
    for key in ("question", "data", "seeds", "CPU kind", "commit", "date"):
        assert f"- {key}: " in md
    assert "| **default** (baseline) |" in md and "synth_test ΔR@1 [95 % CI], verdict" in md
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex
    assert (
        r"\cmidrule(lr){4-6}" in tex
        and "smoke" in tex
        and "±" not in tex
        and "_test" not in tex.replace(r"\_", "")
    )
    assert "Content-Security-Policy" in page and "http" not in page.replace("http-equiv", "")


def test_a_table_on_the_real_profile_states_its_budget():
    plan = P.make_plan(
        DEFS, DEFS.suites["smoke"], "cambridge", [0, 1], PARAMS_TEXT, str(ROOT), check=False
    )
    ranks = {r.name: [1, 2, None, 1, 3, 1] for r in plan.runs}
    budget = P.budget_of(DEFS, plan.suite, "cambridge")
    t = T.build(
        plan,
        St.match(plan, Store(_runs_of(plan, set(ranks), ranks), {}, [])),
        str(ROOT),
        100,
        DEFS.profiles["cambridge"],
        budget,
    )
    md, tex = render.markdown(t), render.latex(t)
    assert (
        "- budget: train.epochs=4, schedulers.multistep.milestones=[3]; about 5 min per run on 2 CPU cores"
        in md
    )
    assert (
        r"budget: train.epochs=4, schedulers.multistep.milestones=[3]; about 5 min per run" in tex
    )
    assert "- budget:" not in render.markdown(_table())  # the embedded city: the shipped params


def test_outputs_are_written_to_a_temporary_path_then_renamed(tmp_path, monkeypatch):
    t = _table()
    out = tmp_path / "out"
    renames = []
    real = os.replace
    monkeypatch.setattr("vpr.io.os.replace", lambda a, b: renames.append((a, b)) or real(a, b))
    written = render.write(t, str(out))
    assert sorted(os.path.basename(p) for p in written) == [
        "index.html",
        "table.json",
        "table.md",
        "table.tex",
    ]
    assert {b for _, b in renames} == set(written)
    assert all(
        os.path.dirname(a) == str(out) and os.path.basename(a).startswith("." + os.path.basename(b))
        for a, b in renames
    )
    assert (
        "<svg" in (out / "index.html").read_text()
        and json.loads((out / "table.json").read_text())["rows"]
    )
    before = (out / "index.html").read_text()
    monkeypatch.setattr(render, "page", lambda t, svg: None)  # the page's write fails half-way
    with pytest.raises(TypeError):
        render.write(t, str(out))
    assert (out / "index.html").read_text() == before  # the previous page, whole
    assert sorted(os.listdir(out)) == sorted(
        os.path.basename(p) for p in written
    )  # no temporary left behind


# ------------------------------------------------------------------------------------ end to end (slow)


def _suites(*args, cwd):
    """`python -m vpr.suites <args>` in a pipeline copy, with this checkout's library."""
    return run_checked([sys.executable, "-m", "vpr.suites", *args], cwd)


@pytest.fixture(scope="module")
def city_repo(pristine_repo, tmp_path_factory):
    """The miniature pipeline, repro'd and committed; `python -m vpr.suites` there uses this checkout's library."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "PYTHONPATH",
            os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p),
        )
        yield copy_repo(pristine_repo[0], tmp_path_factory.mktemp("suites") / "repo")


@pytest.mark.slow
def test_a_tiny_suite_runs_end_to_end_on_the_miniature_city_and_resumes(city_repo):
    out = _suites("run", "smoke", "--jobs", "1", "--resamples", "300", cwd=city_repo)
    assert (
        "4 runs; 1 in the store, 0 already queued, 3 to run here" in out
        and "runner's own time" in out
    )
    table = (city_repo / "reports/suites/smoke-synth/table.md").read_text()
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| **default**") or line.startswith("| circle")
    ]
    assert len(rows) == 2 and all(
        line.count("±") == 4 for line in rows
    )  # R@1, R@5 by day and at night
    assert any(v in rows[1] for v in ("better", "worse", "within noise"))
    for name in ("table.tex", "table.json", "index.html"):
        assert (city_repo / "reports/suites/smoke-synth" / name).is_file()
    again = _suites("run", "smoke", "--jobs", "1", "--resamples", "300", cwd=city_repo)
    assert "4 in the store, 0 already queued, 0 to run here" in again
    assert "queued [" not in again


def _strip_date(text: str) -> str:
    """The table without its date and its provenance note (which experiment supplied each run: another store
    may hold the same run under another name, e.g. a suite's run reused by another suite)."""
    return "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("- date: ", "- found under another name"))
    )


def _smoke_table(city_repo) -> Path:
    """The smoke suite's table of the miniature repository (run here unless an earlier test ran it)."""
    _suites("run", "smoke", "--jobs", "1", "--resamples", "300", cwd=city_repo)
    return city_repo / "reports/suites/smoke-synth/table.md"


@pytest.mark.slow
def test_two_clones_sharing_git_and_dvc_remotes_give_the_table_of_one_machine(tmp_path, city_repo):
    """Clone A runs seed 0, clone B seed 1, each pushes its experiments (Git refs to a bare remote, outputs to a
    local DVC remote); A pulls B's: its table equals the one the miniature repository wrote after running every
    run itself (same commit)."""
    single = _smoke_table(city_repo).read_text()
    bare, store = tmp_path / "remote.git", tmp_path / "dvc-store"
    run_checked(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    origin = tmp_path / "origin"
    shutil.copytree(
        city_repo,
        origin,
        symlinks=True,
        ignore=lambda d, names: [
            n
            for n in names
            if (n == "tmp" and d.endswith(".dvc")) or (n == "suites" and d.endswith("reports"))
        ],
    )
    branch = run_checked(["git", "rev-parse", "--abbrev-ref", "HEAD"], origin).strip()
    run_checked(["git", "remote", "add", "origin", str(bare)], origin)
    run_checked(["git", "push", "-q", "origin", branch], origin)
    dvc(
        "remote", "add", "--local", "-d", "store", str(store), cwd=origin
    )  # --local: the commit stays the same
    dvc("push", "-q", cwd=origin)
    clones = {}
    for name, shard in (("a", "1/2"), ("b", "2/2")):
        clones[name] = tmp_path / name
        run_checked(["git", "clone", "-q", str(bare), str(clones[name])], tmp_path)
        dvc("remote", "add", "--local", "-d", "store", str(store), cwd=clones[name])
        dvc("pull", "-q", cwd=clones[name])
        args = ("run", "smoke", "--jobs", "1", "--shard", shard, "--resamples", "300")
        _suites(*args, cwd=clones[name])
        dvc("exp", "push", "origin", cwd=clones[name])
    dvc("exp", "pull", "origin", cwd=clones["a"])
    _suites("table", "smoke", "--resamples", "300", "--out", "merged", cwd=clones["a"])
    merged = (clones["a"] / "merged/table.md").read_text()
    assert "not in the store yet" not in merged and "| circle " in merged
    assert _strip_date(merged) == _strip_date(single)
    rows = [
        json.loads(p.read_text())["rows"]
        for p in (
            clones["a"] / "merged/table.json",
            city_repo / "reports/suites/smoke-synth/table.json",
        )
    ]
    assert rows[0] == rows[1] and [r["seeds"] for r in rows[0]] == [[0, 1], [0, 1]]


@pytest.mark.slow
def test_compare_groups_the_stored_seed_grid_and_gives_intervals_and_verdicts(city_repo):
    """vpr.compare on the smoke suite's runs (2 seeds x default / circle loss, from the experiment store), with a
    queued run it leaves out and a saved repeat of the committed run it drops."""
    _smoke_table(city_repo)
    dvc(
        "exp", "run", "--queue", "-S", "seed=7", cwd=city_repo
    )  # queued, not run: listed as not included
    dvc("exp", "save", "-n", "repeat-of-head", cwd=city_repo)  # the committed run again: dropped
    try:
        out = _compare_checks(city_repo)
    finally:
        dvc("queue", "remove", "--all", cwd=city_repo)
        dvc("exp", "remove", "repeat-of-head", cwd=city_repo)
    assert "not included (queued)" in out and "dropped repeated runs" in out


def _compare_checks(repo) -> str:
    out = run_checked(
        [sys.executable, "-m", "vpr.compare", "--out", "reports/compare", "--resamples", "500"],
        repo,
    )
    lines = out.splitlines()
    assert any(line.startswith("### synth_test: 24 queries") for line in lines)
    assert any(line.startswith("### synth_test (night)") for line in lines)
    rows = [
        line for line in lines if line.startswith("| baseline") or line.startswith("| loss=circle")
    ]
    assert len(rows) == 4  # both variants, all queries and night
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2" and all("±" in c for c in cells[2:6])  # 2 seeds: mean ± std per R@N
    circle = [c.strip() for c in rows[1].strip("|").split("|")]
    assert circle[6].count("[") == 1 and circle[7] in ("better", "worse", "within noise")
    if circle[7] == "within noise":  # and how many seeds would resolve 2 points
        assert "synth_test, loss=circle: within noise; " in out
    page = (repo / "reports/compare/index.html").read_text()
    assert (
        "<svg" in page and "loss=circle" in page and (repo / "reports/compare/compare.md").is_file()
    )
    return out


def test_runs_on_another_profile_are_named_apart_from_the_suites_own():
    """One store holds a suite's runs on the synthetic city and on the real photos: their DVC names differ."""
    suite = S.load().suites["methods"]
    assert P.run_name(suite, "synth", "places", 0) == "methods-places-s0"
    assert P.run_name(suite, "cambridge", "places", 0) == "methods-cambridge-places-s0"
