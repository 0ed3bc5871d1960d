"""DDP: `train.processes: 2` trains two gloo processes on CPU (torchrun) like one process on the same global
batch, writes one set of checkpoints and logs, and resumes an interrupted run."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from tests.test_config import ROOT
from tests.test_pipeline import TINY, _merge

pytestmark = pytest.mark.slow


def _run(box, *args):
    proc = subprocess.run([sys.executable, *args], cwd=box, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _params(box, **train):
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    params["optimizer"] = "sgd"   # Adam's g / sqrt(v) would magnify float rounding of near-zero gradients
    params["optimizers"]["sgd"]["lr"] = 0.01
    params["train"].update({"epochs": 2, "batches_per_epoch": 3, "patience": 0, **train})
    (box / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    box = tmp_path_factory.mktemp("ddp")
    for d in ("stages", "src"):
        shutil.copytree(ROOT / d, box / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _params(box)
    _run(box, "stages/fetch.py", "synth")
    _run(box, "stages/build_gt.py")
    return box


def _train(box, processes, keep_as, resume_from=None, **train):
    shutil.rmtree(box / "models", ignore_errors=True)
    shutil.rmtree(box / "metrics", ignore_errors=True)
    if resume_from is not None:
        (box / "models").mkdir()
        torch.save(resume_from, box / "models/last.pt")
    _params(box, processes=processes, **train)
    out = _run(box, "stages/train.py")
    shutil.copytree(box / "models", box / keep_as / "models")
    shutil.copytree(box / "metrics", box / keep_as / "metrics")
    return out


def _in_box(box, what):
    """The box's initial weights or its run fingerprint, for its current params.yaml."""
    from vpr.config import load_config
    from vpr.data.groundtruth import load_train_set
    from vpr.train.recipe import build_recipe, fingerprint
    cwd = os.getcwd()
    os.chdir(box)
    try:
        cfg = load_config()
        if what == "fingerprint":
            return fingerprint(cfg, "data/gt/train", "data/gt/val")
        return build_recipe(cfg, load_train_set("data/gt/train")).model.state_dict()
    finally:
        os.chdir(cwd)


def _assert_same_training(box, one, two, initial):
    a = torch.load(box / one / "models/last.pt", weights_only=True)
    b = torch.load(box / two / "models/last.pt", weights_only=True)
    for name, weights in a["model"].items():
        if weights.is_floating_point():   # every tensor moved the same way, up to float rounding
            moved = (weights - initial[name]).norm()
            assert (weights - b["model"][name]).norm() <= 0.02 * moved + 1e-6, name
    for ra, rb in zip(a["loop"]["history"], b["loop"]["history"], strict=True):
        if ra["epoch"]:
            assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4)
        for k in ("val_R@1", "val_R@5", "val_R@10", "val_R@20"):   # 20 queries: one query is 5 points
            assert abs(ra[k] - rb[k]) <= 5.0 + 1e-9, (ra, rb)


def test_two_gloo_processes_train_like_one_process_on_the_same_global_batch(box):
    _train(box, 1, "single")
    out = _train(box, 2, "ddp")
    assert "2 processes (DDP)" in out and out.count("train: best epoch") == 1   # only rank 0 speaks
    _assert_same_training(box, "single", "ddp", _in_box(box, "weights"))
    logged = (box / "ddp/metrics/train/plots/metrics/val_R@1.tsv").read_text().strip().splitlines()
    assert len(logged) == 1 + 3                                                  # header + epochs 0..2, once
    summary = json.loads((box / "ddp/metrics/train/metrics.json").read_text())
    assert summary["epochs_run"] == 2


def test_an_interrupted_ddp_run_resumes_and_ends_like_an_uninterrupted_one(box):
    if not (box / "single").exists():
        _train(box, 1, "single")
    # the checkpoint of a 2-process run of these params stopped after epoch 1 of 2: a one-epoch run's (its
    # state after epoch 1 is the same), marked unfinished and given the two-epoch run's fingerprint
    _train(box, 1, "one_epoch", epochs=1)
    checkpoint = torch.load(box / "one_epoch/models/last.pt", weights_only=True)
    _params(box, processes=2)
    checkpoint.update(finished=False, fingerprint=_in_box(box, "fingerprint"))
    out = _train(box, 2, "resumed", resume_from=checkpoint)
    assert "resuming after epoch 1" in out
    _assert_same_training(box, "single", "resumed", _in_box(box, "weights"))
