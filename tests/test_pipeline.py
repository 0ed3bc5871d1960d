"""End to end: the DVC pipeline in a throw-away copy of this repository, on a miniature city."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    "synthetic": {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_SYNTHETIC.items()},
    "train": {"epochs": 1, "image_size": [48, 64], "places_per_batch": 8, "images_per_place": 4, "num_workers": 0},
    "extract": {"image_size": [48, 64], "batch_size": 32, "num_workers": 0},
    "viz": {"num_queries": 3, "curve_max_n": 20},
}


def _merge(base, override):
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _run(args, cwd):
    env = {**os.environ, "TQDM_DISABLE": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/forbid_torch"), os.environ.get("PYTHONPATH", "")]),
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _dvc(*args, cwd):
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def _ran(output):
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC copy of this checkout (tracked and new files), with the tiny params, after `dvc repro`."""
    dest = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and (not f.startswith(("data/", "models/", "reports/", "metrics/"))
                                     or f.startswith("data/lists/")):   # night query lists: a build_gt dep
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    _run(["git", "init", "-q"], dest)
    _run(["git", "add", "-A"], dest)
    _run(["git", "commit", "-q", "-m", "tiny"], dest)
    out = _dvc("repro", cwd=dest)
    _run(["git", "add", "-A"], dest)
    _run(["git", "commit", "-q", "-m", "repro"], dest)
    return dest, out


def test_repro_writes_the_recall_table_and_one_metrics_file_per_set(repo):
    dest, out = repo
    assert {"fetch@synth", "build_gt", "train", "extract@synth_test", "evaluate@synth_test", "recall_table",
            "visualize@synth_test", "report"} <= _ran(out)
    metrics = json.loads((dest / "metrics/eval/synth_test.json").read_text())
    assert all(0 <= metrics[f"R@{n}"] <= 100 for n in (1, 5, 10, 20))
    assert metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= metrics["R@20"]
    table = (dest / "metrics/recalls.md").read_text()
    assert "| dataset" in table and "R@20" in table and "synth_test" in table
    assert len(list((dest / "reports/predictions/synth_test").glob("*.jpg"))) == 3
    assert (dest / "models/best.pt").exists() and (dest / "metrics/train/plots/metrics/val_R@1.tsv").exists()


def test_train_metrics_record_the_cpu_kernels_and_library_versions(repo):
    import numpy
    import PIL
    import torch
    dest, _ = repo
    env = json.loads((dest / "metrics/train/metrics.json").read_text())["environment"]
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert (env["torch"], env["numpy"], env["pillow"]) == (torch.__version__, numpy.__version__, PIL.__version__)


def test_evaluate_writes_every_querys_result_next_to_the_metrics(repo):
    from vpr.eval.evaluate import read_queries
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
    out = _dvc("exp", "run", "-S", "loss=circle", cwd=dest)
    ran = _ran(out)
    # evaluate@ follows only if the new model gives different descriptors (DVC compares hashes)
    assert {"train", "extract@synth_test"} <= ran
    assert not ran & {"fetch@synth", "build_gt"}


def test_changing_a_visualize_param_reruns_only_visualize_and_the_report(repo):
    dest, _ = repo
    out = _dvc("exp", "run", "-S", "viz.num_queries=2", cwd=dest)
    assert _ran(out) == {"visualize@synth_test", "report"}


def test_exp_show_has_per_dataset_recall_columns(repo):
    dest, _ = repo
    text = _dvc("exp", "show", "--json", cwd=dest)
    assert "metrics/eval/synth_test.json" in text and "R@1" in text and "R@20" in text
