"""What a new user still hit (issue 22, the newcomer part): compare's baseline is the committed params and is
named, a verdict from one seed says so in its cell, the README says how to leave a `dvc exp run` variant and its
`dvc exp show` commands show the `loss` column, the report gives the training time, no dependency file is empty,
epoch 0 reads as the untrained model, and `dvc plots diff` draws offline with each query's pictures paired."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.helpers import ROOT, dvc, fake_report_run, query_run, run_checked
from vpr.errors import DataError
from vpr.eval import statistics as cmp

TEMPLATE = ROOT / "reports/templates/dvc_plots.html"
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*['\"]?\s*(https?:)?//", re.I)


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}")
    return text[start : text.index("\n## ", start + 1)]


# --- 1. compare's baseline: the committed params, named -------------------------------------------------


def test_compare_reads_the_committed_params_not_the_working_copy_dvc_exp_run_rewrote(tmp_path):
    from vpr.eval.experiments import commit_params, describe_rev

    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "loss": "multisimilarity"}))
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-q", "-m", "params"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"seed": 0, "loss": "circle"})
    )  # `dvc exp run -S` left it
    assert commit_params(str(tmp_path), None) == {"seed": 0, "loss": "multisimilarity"}
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    )
    assert describe_rev(str(tmp_path), None) == f"HEAD {head.stdout.strip()}"


def test_the_baseline_is_named_by_where_it_comes_from_and_the_keys_that_set_it_apart():
    from vpr.compare import baseline_line

    variants = cmp.group_variants(
        [
            query_run("a0", 0, [1, 2]),
            query_run("a1", 1, [1, 1]),
            query_run("c0", 0, [1, None], loss="circle"),
        ]
    )
    committed = {"seed": 0, "loss": "ms", "train.epochs": 6}
    base = cmp.pick_baseline(variants, None, committed)
    assert (
        baseline_line(base, variants, None, committed, "HEAD abc1234")
        == "baseline: the committed params (HEAD abc1234): loss=ms"
    )
    chosen = cmp.pick_baseline(variants, "loss=circle", committed)
    assert (
        baseline_line(chosen, variants, "loss=circle", committed, "HEAD abc1234")
        == "baseline: --baseline loss=circle: loss=circle"
    )
    elsewhere = dict(committed, loss="triplet")  # no run has the committed params
    base = cmp.pick_baseline(variants, None, elsewhere)
    assert (
        baseline_line(base, variants, None, elsewhere, "HEAD abc1234")
        == "baseline: the variant with the most seeds (2); no run has the committed params (HEAD abc1234): loss=ms"
    )


def test_an_unknown_baseline_lists_the_variants_with_a_did_you_mean():
    variants = cmp.group_variants(
        [
            query_run("a0", 0, [1]),
            query_run("c0", 0, [1], loss="circle"),
            query_run("t0", 0, [1], loss="triplet", **{"train.epochs": 2}),
        ]
    )
    with pytest.raises(DataError) as err:
        cmp.pick_baseline(variants, "loss=circel")
    message = str(err.value)
    assert "\n" not in message and "first" not in message
    assert message.startswith(
        "--baseline loss=circel: no variant matches; did you mean 'loss=circle'? "
    )
    assert (
        "(variants: loss=ms, train.epochs=6; loss=circle, train.epochs=6; loss=triplet, train.epochs=2; "
        "or an experiment name)" in message
    )
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


# --- 3. the README says how to leave a variant's params -----------------------------------------------------


def test_the_readme_says_how_to_get_back_from_a_variant_dvc_exp_run_left_in_params_yaml():
    section = _readme_section("Trying variants")
    assert "git checkout params.yaml" in section and "dvc exp apply" in section
    assert "--temp" in section and "--queue" in section


# --- 4 and 7. the training loss is `train_loss`; epoch 0 is the untrained model ------------------------------


def _tiny_training():
    import torch

    from vpr.models.aggregators import AGGREGATORS
    from vpr.models.backbones import BACKBONES
    from vpr.models.network import build_model
    from vpr.train.losses import LOSSES
    from vpr.train.objectives import MetricObjective
    from vpr.train.optim import OPTIMIZERS
    from vpr.train.setup import Training

    torch.manual_seed(0)
    spec = dict(
        backbone="resnet18",
        backbone_settings=BACKBONES.check("resnet18", {}),
        aggregator="gem",
        aggregator_settings=AGGREGATORS.check("gem", {}),
        descriptor_dim=None,
        image_size=[32, 48],
    )
    model = build_model(spec)
    objective = MetricObjective(LOSSES.build("contrastive", 2, model.descriptor_dim), None)
    batch = {"images": torch.randn(8, 3, 32, 48), "labels": torch.arange(2).repeat_interleave(4)}
    return Training(
        spec,
        model,
        objective,
        OPTIMIZERS.build("adam", model.parameters(), settings=dict(lr=1e-3)),
        None,
        sampler=None,
        batches=lambda epoch: [batch],
    )


def test_the_loss_is_logged_as_train_loss_and_epoch_0_as_the_untrained_model(
    tmp_path, monkeypatch, capsys
):
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.session import TrainLog

    monkeypatch.chdir(tmp_path)
    scores = iter([10.0, 20.0])
    with TrainLog("log", True) as log:
        fit(
            _tiny_training(),
            LoopConfig(epochs=1, checkpoint_dir="models"),
            lambda m: {"R@1": next(scores)},
            log.row,
        )
    epochs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert epochs[0].startswith("epoch 0 (untrained model): ") and "val_R@1 10" in epochs[0]
    assert "loss" not in epochs[0] and "nan" not in epochs[0]
    assert epochs[1].startswith("epoch 1: train_loss ")
    metrics = json.loads((tmp_path / "log/metrics.json").read_text())
    assert (
        "train_loss" in metrics and "loss" not in metrics
    )  # no column collides with the `loss` param
    logs = sorted(p.name for p in (tmp_path / "log/plots/metrics").iterdir())
    assert "train_loss.tsv" in logs and "loss.tsv" not in logs


# --- 5 and 7. the report: training time, the untrained model -----------------------------------------------


@pytest.fixture(scope="module")
def report_run(tiny_city, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inputs, _ = fake_report_run(tiny_city, root)
    return root, inputs


def _summary(page: str) -> str:
    return re.search(r"<section id='summary'>(.*?)</section>", page, re.S).group(1)


def test_the_report_gives_the_training_time_and_draws_the_train_loss(report_run):
    from vpr.viz.report_page import build_report

    root, inputs = report_run
    page = build_report(inputs)
    assert "<dd>2 epochs in 0.1 min; best epoch 2</dd>" in _summary(page) and "?" not in _summary(
        page
    )
    training = re.search(r"<section id='training'>(.*?)</section>", page, re.S).group(1)
    assert training.count("<svg") == 3 and "Training loss" in training
    assert "epoch 0 is the untrained model" in training


def test_the_report_names_a_best_epoch_0_the_untrained_model(report_run, tmp_path):
    from dataclasses import replace

    from vpr.viz.report_page import build_report

    _, inputs = report_run
    summary = json.loads(open(inputs.train_summary).read())
    (tmp_path / "metrics.json").write_text(json.dumps(dict(summary, best_epoch=0)))
    page = build_report(
        replace(inputs, train_summary=str(tmp_path / "metrics.json"), train_time=None)
    )
    assert "<dd>2 epochs; best epoch 0 (the untrained model)</dd>" in _summary(page)


# --- 6. no dependency file is empty (DVC warns about each one, every run) ------------------------------------


def _dependency_files():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {
        d if isinstance(d, str) else next(iter(d))
        for s in stages.values()
        for d in s.get("do", s)["deps"]
    }
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
    assert not empty, (
        f"DVC warns about each empty dependency on every run; give them a docstring: {empty}"
    )


# --- 8. prediction pictures pair up across experiments; the dvc plots page works offline --------------------


def test_a_querys_picture_has_one_name_whatever_its_verdict_and_the_report_says_the_verdict(
    report_run,
):
    from vpr.eval.query_results import read_queries
    from vpr.viz.report_page import build_report

    root, inputs = report_run
    names = sorted(os.listdir(root / "predictions/city"))
    assert len(names) == 2 and all(re.fullmatch(r"query_\d{5}\.jpg", n) for n in names), names
    with open(inputs.sets["city"]["queries"]) as fh:
        first = {r["query"]: r["first_correct"] for r in read_queries(fh)}
    page = build_report(inputs)
    for name in names:
        qi = int(name[6:11])
        verdict = "correct" if first[qi] == 1 else "wrong"
        assert f"<figcaption>query {qi}: top-1 {verdict}</figcaption>" in page


def test_the_picture_itself_says_the_top1_verdict():
    from vpr.viz.predictions import query_label

    assert query_label(night=False, correct=True) == "query: top-1 correct"
    assert query_label(night=True, correct=False) == "night query: top-1 wrong"
    assert query_label(night=False, correct=None) == "query"  # no coordinates: no verdict


def test_the_dvc_plots_template_loads_vega_from_itself_not_a_cdn():
    text = TEMPLATE.read_text()
    assert (
        "{plot_divs}" in text and "{scripts}" not in text
    )  # DVC's CDN script tags are not inserted
    assert not EXTERNAL_SCRIPT.search(text) and "cdn." not in text
    for name, version in (("vega", "5.20.2"), ("vega-lite", "5.2.0"), ("vega-embed", "6.18.2")):
        assert (
            f"{name}@{version}" in text and "University of Washington Interactive Data Lab" in text
        )
    config = (ROOT / ".dvc/config").read_text()
    assert re.search(r"html_template\s*=\s*\.\./reports/templates/dvc_plots\.html", config)


def test_a_page_rendered_with_the_template_references_no_script_online(tmp_path):
    from dvc_render import render_html
    from dvc_render.vega import VegaRenderer

    renderer = VegaRenderer(
        [{"step": 1, "train_loss": 2.0, "rev": "HEAD"}], "train_loss.tsv", x="step", y="train_loss"
    )
    page = tmp_path / "index.html"
    render_html([renderer], page, html_template=str(TEMPLATE))
    text = page.read_text()
    assert "vegaEmbed('#" in text and not EXTERNAL_SCRIPT.search(text)


# --- end to end, on the miniature city --------------------------------------------------------------------


@pytest.fixture(scope="module")
def circle(repo):
    """`dvc exp run -S loss=circle`, as the README's first variant: it leaves params.yaml rewritten."""
    dest, _ = repo
    dvc("exp", "run", "-n", "circle", "-S", "loss=circle", cwd=dest)
    return "circle"


@pytest.mark.slow
def test_repro_warns_of_no_empty_file_and_calls_epoch_0_the_untrained_model(repo):
    _, out = repo
    assert "is empty" not in out
    assert re.search(r"^epoch 0 \(untrained model\): lr ", out, re.M) and "loss nan" not in out
    assert re.search(r"^epoch 1: train_loss \d", out, re.M)


@pytest.mark.slow
def test_the_train_stage_writes_its_time_and_the_report_shows_it(repo):
    dest, _ = repo
    minutes = json.loads((dest / "metrics/train/time.json").read_text())["train_minutes"]
    assert minutes > 0
    summary = _summary((dest / "reports/index.html").read_text())
    assert f"<dd>1 epoch in {minutes:.1f} min; best epoch " in summary and "?" not in summary


@pytest.mark.slow
def test_compare_after_dvc_exp_run_takes_the_committed_params_as_baseline(repo, circle):
    dest, _ = repo
    assert (
        yaml.safe_load((dest / "params.yaml").read_text())["loss"] == "circle"
    )  # what exp run leaves
    head = run_checked(["git", "rev-parse", "--short", "HEAD"], dest).strip()
    out = run_checked([sys.executable, "-m", "vpr.compare", "--resamples", "300"], dest)
    assert (
        out.splitlines()[0] == f"baseline: the committed params (HEAD {head}): loss=multisimilarity"
    )
    row = next(line for line in out.splitlines() if line.startswith("| loss=circle "))
    assert row.rstrip(" |").endswith("(one seed: query noise only)")
    proc = subprocess.run(
        [sys.executable, "-m", "vpr.compare", "--baseline", "loss=circel"],
        cwd=dest,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(
        "error: --baseline loss=circel: no variant matches; did you mean 'loss=circle'? "
        "(variants: loss=multisimilarity; loss=circle; or an experiment name)"
    )
    run_checked(["git", "checkout", "params.yaml"], dest)  # the README's way back
    assert run_checked(["git", "status", "--porcelain", "params.yaml"], dest) == ""


def _readme_exp_show_commands() -> list[list[str]]:
    section = _readme_section("Trying variants")
    return [
        shlex.split(line, comments=True)
        for line in section.splitlines()
        if line.startswith("dvc exp show")
    ]


@pytest.mark.slow
def test_the_readmes_exp_show_commands_show_the_loss_column_and_few_others(repo, circle):
    dest, _ = repo
    commands = _readme_exp_show_commands()
    assert len(commands) >= 2  # the recall columns, and a short default view
    for command in commands:
        csv = dvc(*command[1:], "--csv", cwd=dest).splitlines()
        header = csv[0].split(",")
        assert "loss" in header and not any(c.startswith("losses.") for c in header), header
        assert "R@1" in header and len(header) <= 16, header
        rows = {line.split(",")[0]: dict(zip(header, line.split(","))) for line in csv[1:]}
        assert rows["circle"]["loss"] == "circle"


@pytest.mark.slow
def test_dvc_plots_diff_draws_offline_with_each_querys_pictures_side_by_side(
    repo, circle, tmp_path
):
    dest, _ = repo
    dvc("plots", "diff", "HEAD", circle, "-o", str(tmp_path / "plots"), cwd=dest)
    page = (tmp_path / "plots/index.html").read_text()
    assert (
        "vegaEmbed('#" in page and not EXTERNAL_SCRIPT.search(page) and "cdn.jsdelivr" not in page
    )
    plots = json.loads(dvc("plots", "diff", "HEAD", circle, "--json", cwd=dest))
    pictures = [k for k in plots["data"] if k.startswith("reports/predictions/synth_test/")]
    assert len(pictures) == 3 and all(re.fullmatch(r".*/query_\d{5}\.jpg", k) for k in pictures), (
        pictures
    )
    for k in pictures:
        assert sorted(p["revisions"][0] for p in plots["data"][k]) == ["HEAD", circle]
    assert "metrics/train/plots/metrics/train_loss.tsv" in plots["data"]
