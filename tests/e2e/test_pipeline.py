"""End to end: the DVC pipeline in a throw-away copy of this repository, on a miniature city."""

import json

import pytest

from tests.helpers import dvc, ran_stages

pytestmark = pytest.mark.slow


def test_repro_writes_the_recall_table_and_one_metrics_file_per_set(repo):
    dest, out = repo
    assert {
        "fetch@synth",
        "build_gt",
        "train",
        "extract@synth_test",
        "evaluate@synth_test",
        "recall_table",
        "visualize@synth_test",
        "report",
    } <= ran_stages(out)
    metrics = json.loads((dest / "metrics/eval/synth_test.json").read_text())
    assert all(0 <= metrics[f"R@{n}"] <= 100 for n in (1, 5, 10, 20))
    assert metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= metrics["R@20"]
    table = (dest / "metrics/recalls.md").read_text()
    assert "| dataset" in table and "R@20" in table and "synth_test" in table
    assert len(list((dest / "reports/predictions/synth_test").glob("*.jpg"))) == 3
    assert (dest / "models/best.pt").exists() and (
        dest / "metrics/train/plots/metrics/val_R@1.tsv"
    ).exists()


def test_train_metrics_record_the_cpu_kernels_and_library_versions(repo):
    import numpy
    import PIL
    import torch

    dest, _ = repo
    env = json.loads((dest / "metrics/train/metrics.json").read_text())["environment"]
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert (env["torch"], env["numpy"], env["pillow"]) == (
        torch.__version__,
        numpy.__version__,
        PIL.__version__,
    )


def test_evaluate_writes_every_querys_result_next_to_the_metrics(repo):
    from vpr.eval.query_results import read_queries

    dest, _ = repo
    metrics = json.loads((dest / "metrics/eval/synth_test.json").read_text())
    with open(dest / "metrics/eval/synth_test.queries.tsv") as fh:
        rows = read_queries(fh)
    assert len(rows) == metrics["num_queries"] and all(len(r["top"]) == 20 for r in rows)
    hits = [r["first_correct"] is not None and r["first_correct"] <= 5 for r in rows]
    assert 100 * sum(hits) / len(rows) == pytest.approx(metrics["R@5"])
    assert "synth_test.queries.tsv" in (dest / "reports/index.html").read_text()


def test_changing_the_loss_reruns_training_and_after_but_not_fetch_or_gt(repo):
    dest, _ = repo
    out = dvc("exp", "run", "-S", "loss=circle", cwd=dest)
    ran = ran_stages(out)
    # evaluate@ follows only if the new model gives different descriptors (DVC compares hashes)
    assert {"train", "extract@synth_test"} <= ran
    assert not ran & {"fetch@synth", "build_gt"}


def test_changing_a_visualize_param_reruns_only_visualize_and_the_report(repo):
    dest, _ = repo
    out = dvc("exp", "run", "-S", "viz.num_queries=2", cwd=dest)
    assert ran_stages(out) == {"visualize@synth_test", "report"}


def test_exp_show_has_per_dataset_recall_columns(repo):
    dest, _ = repo
    text = dvc("exp", "show", "--json", cwd=dest)
    assert "metrics/eval/synth_test.json" in text and "R@1" in text and "R@20" in text
