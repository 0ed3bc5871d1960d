"""The offline HTML report and its pieces (charts, maps), built from a small fake run on the miniature city."""

import json
import os
import re

import numpy as np
import pytest

from tests.helpers import fake_report_run
from vpr.viz import charts, maps
from vpr.viz.report_page import build_report, markdown_table_to_html


@pytest.fixture(scope="module")
def run(tiny_city, tmp_path_factory):
    """The files a pipeline run leaves behind, with random (but fixed) descriptors."""
    root = tmp_path_factory.mktemp("run")
    inputs, gt = fake_report_run(tiny_city, root)
    return root, inputs, gt


def test_the_page_has_every_section_and_loads_nothing_from_anywhere(run):
    root, inputs, _ = run
    page = build_report(inputs)
    for sid in ("summary", "recalls", "recall-curves", "training", "maps", "predictions", "params"):
        assert f"<section id='{sid}'>" in page and f"href='#{sid}'" in page
    assert "<script" not in page
    refs = re.findall(r"\b(?:src|href)\s*=\s*['\"]([^'\"]*)['\"]", page)
    links = [
        r for r in refs if not r.startswith(("data:", "#"))
    ]  # only links to the per-query results
    assert len(links) == 1 and links[0].endswith("eval/city.queries.tsv") and "<a href=" in page
    assert page.count("<img") == len(os.listdir(root / "predictions/city")) == 2
    # 1 recall chart + 3 training charts + map and error histogram of the set + val map + a map per training city
    assert page.count("<svg") == 1 + 3 + 2 + 1 + _training_cities(inputs)
    assert (
        "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped" not in page
    )  # params shown verbatim, escaped
    # no absolute paths: the page does not depend on where the run lives (but for the link to the per-query
    # file, relative to reports/, which the stage gives as a repository path)
    assert str(root) not in page.replace(links[0], "")


def _training_cities(inputs) -> int:
    from vpr.data.groundtruth import load_train_set

    return len(set(load_train_set(inputs.train_gt).place_city.tolist()))


def test_the_same_inputs_give_the_same_bytes(run):
    _, inputs, _ = run
    assert build_report(inputs) == build_report(inputs)


def test_the_recall_table_is_the_pipelines_markdown_table(run):
    root, _, _ = run
    table = markdown_table_to_html((root / "recalls.md").read_text())
    metrics = json.loads((root / "eval/city.json").read_text())
    assert table.startswith(
        "<table><thead><tr><th>dataset</th><th>R@1</th><th>R@5</th><th>R@10</th>"
    )
    assert (
        f"<td>city</td><td>{metrics['R@1']:.1f}</td>" in table and table.count("<tr>") == 1 + 2
    )  # + night row


def test_a_missing_input_is_named_before_any_rendering(run, tmp_path):
    from dataclasses import replace

    from vpr.errors import DataError

    _, inputs, _ = run
    with pytest.raises(
        DataError, match="recalls.md: needed by the report but missing; run `dvc repro`"
    ):
        build_report(replace(inputs, recall_table=str(tmp_path / "recalls.md")))


def test_top1_error_bins_split_correct_near_misses_and_far_failures():
    bins = maps.error_bins(
        np.array([3.0, 30.0, 75.0, 150.0, 900.0, 26.0]),
        np.array([True, False, False, False, False, False]),
        radius_m=25,
    )
    assert bins == {
        "correct": 1,
        "25-50 m": 2,
        "50-100 m": 1,
        "100-200 m": 1,
        "200-400 m": 0,
        "> 400 m": 1,
    }


def test_maps_use_an_equal_metre_scale_and_colour_queries_by_top1(run):
    _, _, gt = run
    correct = np.arange(gt.num_queries) % 3 == 0
    spec, caption = maps.eval_set_map(gt, "city", correct)
    x, y = spec["encoding"]["x"]["scale"]["domain"], spec["encoding"]["y"]["scale"]["domain"]
    assert (
        abs((x[1] - x[0]) / spec["width"] - (y[1] - y[0]) / spec["height"])
        < 0.02 * (x[1] - x[0]) / spec["width"]
    )
    groups = [r["group"] for r in spec["data"]["values"]]
    assert (
        groups.count("top-1 correct") == correct.sum()
        and groups.count("top-1 wrong") == (~correct).sum()
    )
    assert (
        groups.count("database") == gt.num_database and "UTM 10S" in spec["encoding"]["x"]["title"]
    )
    assert f"{int(correct.sum())} with a correct top-1" in caption


def test_charts_render_offline_to_svg_with_unique_ids(run):
    _, inputs, _ = run
    specs = charts.training_charts(inputs.train_log_dir, best_epoch=2)
    assert [s["title"] for s in specs] == ["Training loss", "Learning rate", "Validation recall"]
    svg = charts.to_svg(specs[2])
    assert svg.startswith("<svg") and "R@1" in svg and "R@5" in svg
    from vpr.viz.report_page import _prefix_ids

    assert (
        _prefix_ids('<clipPath id="clip1"/><g clip-path="url(#clip1)"/>', "c7-")
        == '<clipPath id="c7-clip1"/><g clip-path="url(#c7-clip1)"/>'
    )
