"""What a new user still hit (issue 22, the newcomer part): compare's baseline is the committed params and is
named, a verdict from one seed says so in its cell, the README says how to leave a `dvc exp run` variant and its
`dvc exp show` commands show the `loss` column, the report gives the training time, no dependency file is empty,
epoch 0 reads as the untrained model, and `dvc plots diff` draws offline with each query's pictures paired."""
import os
import re
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, query_run
from vpr.errors import DataError
from vpr.eval import compare as cmp

TEMPLATE = ROOT / "reports/templates/dvc_plots.html"
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*['\"]?\s*(https?:)?//", re.I)


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}")
    return text[start:text.index("\n## ", start + 1)]


# --- 1. compare's baseline: the committed params, named -------------------------------------------------

def test_compare_reads_the_committed_params_not_the_working_copy_dvc_exp_run_rewrote(tmp_path):
    from vpr.eval.experiments import commit_params, describe_rev
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "loss": "multisimilarity"}))
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-q", "-m", "params"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "loss": "circle"}))   # `dvc exp run -S` left it
    assert commit_params(str(tmp_path), None) == {"seed": 0, "loss": "multisimilarity"}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    assert describe_rev(str(tmp_path), None) == f"HEAD {head.stdout.strip()}"


def test_the_baseline_is_named_by_where_it_comes_from_and_the_keys_that_set_it_apart():
    from vpr.compare import baseline_line
    variants = cmp.group_variants([query_run("a0", 0, [1, 2]), query_run("a1", 1, [1, 1]),
                                   query_run("c0", 0, [1, None], loss="circle")])
    committed = {"seed": 0, "loss": "ms", "train.epochs": 6}
    base = cmp.pick_baseline(variants, None, committed)
    assert baseline_line(base, variants, None, committed, "HEAD abc1234") == \
        "baseline: the committed params (HEAD abc1234): loss=ms"
    chosen = cmp.pick_baseline(variants, "loss=circle", committed)
    assert baseline_line(chosen, variants, "loss=circle", committed, "HEAD abc1234") == \
        "baseline: --baseline loss=circle: loss=circle"
    elsewhere = dict(committed, loss="triplet")           # no run has the committed params
    base = cmp.pick_baseline(variants, None, elsewhere)
    assert baseline_line(base, variants, None, elsewhere, "HEAD abc1234") == \
        "baseline: the variant with the most seeds (2); no run has the committed params (HEAD abc1234): loss=ms"


def test_an_unknown_baseline_lists_the_variants_with_a_did_you_mean():
    variants = cmp.group_variants([query_run("a0", 0, [1]), query_run("c0", 0, [1], loss="circle"),
                                   query_run("t0", 0, [1], loss="triplet", **{"train.epochs": 2})])
    with pytest.raises(DataError) as err:
        cmp.pick_baseline(variants, "loss=circel")
    message = str(err.value)
    assert "\n" not in message and "first" not in message
    assert message.startswith("--baseline loss=circel: no variant matches; did you mean 'loss=circle'? ")
    assert "(variants: loss=ms, train.epochs=6; loss=circle, train.epochs=6; loss=triplet, train.epochs=2; " \
           "or an experiment name)" in message
    with pytest.raises(DataError, match=r"^--baseline seed=3: no variant matches; \(variants: "):
        cmp.pick_baseline(variants, "seed=3")


# --- 2. a verdict from one seed says so --------------------------------------------------------------------

def test_a_verdict_from_one_seed_says_in_its_cell_that_it_holds_query_noise_only():
    from vpr.compare import comparison_rows, markdown
    good, poor = [1] * 80 + [None] * 20, [1] * 40 + [None] * 60
    one_each = [query_run("a0", 0, good), query_run("c0", 0, poor, loss="circle")]
    variants = cmp.group_variants(one_each)
    base = cmp.pick_baseline(variants, "loss=ms")
    cmp.label_variants(variants, base)
    rows = comparison_rows(variants, base, "city", [1], False, 500)
    assert rows[1]["verdict"] == "worse (one seed: query noise only)"
    assert "| worse (one seed: query noise only) |" in markdown("city", rows, [1])
    two_each = one_each + [query_run("a1", 1, good), query_run("c1", 1, poor, loss="circle")]
    variants = cmp.group_variants(two_each)
    base = cmp.pick_baseline(variants, "loss=ms")
    cmp.label_variants(variants, base)
    assert comparison_rows(variants, base, "city", [1], False, 500)[1]["verdict"] == "worse"


# --- 6. no dependency file is empty (DVC warns about each one, every run) ------------------------------------

def _dependency_files():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {d if isinstance(d, str) else next(iter(d)) for s in stages.values() for d in s.get("do", s)["deps"]}
    for dep in sorted(d for d in deps if "${" not in d):
        path = ROOT / dep
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_no_file_a_stage_depends_on_is_empty():
    files = sorted(set(_dependency_files()))
    assert len(files) > 50 and ROOT / "src/vpr/data/__init__.py" in files
    empty = [str(p.relative_to(ROOT)) for p in files if p.stat().st_size == 0]
    assert not empty, f"DVC warns about each empty dependency on every run; give them a docstring: {empty}"
