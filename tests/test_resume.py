"""Training survives a kill: `dvc repro` reruns the train stage, which continues from models/last.pt."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.conftest import TINY_SYNTHETIC
from tests.test_config import ROOT
from tests.test_pipeline import TINY, _merge

pytestmark = pytest.mark.slow


def _run(box, *args, check=True):
    proc = subprocess.run([sys.executable, *args], cwd=box, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    box = tmp_path_factory.mktemp("resume")
    for d in ("stages", "src"):
        shutil.copytree(ROOT / d, box / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    params["train"].update(epochs=3, batches_per_epoch=8, patience=0)
    (box / "params.yaml").write_text(yaml.safe_dump(params))
    _run(box, "stages/fetch.py", "synth")
    _run(box, "stages/build_gt.py")
    return box


def _outcome(box):
    metrics = json.loads((box / "metrics/train/metrics.json").read_text())
    logs = {p.name: p.read_text() for p in (box / "metrics/train/plots/metrics").glob("*.tsv")}
    weights = torch.load(box / "models/best.pt", weights_only=True)["model"]
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in weights.values())).hexdigest()
    return metrics, logs, digest


def _clean(box):
    shutil.rmtree(box / "models", ignore_errors=True)
    shutil.rmtree(box / "metrics", ignore_errors=True)


def test_a_killed_training_resumes_and_ends_like_an_uninterrupted_one(box):
    _clean(box)
    _run(box, "stages/train.py")
    uninterrupted = _outcome(box)

    _clean(box)
    proc = subprocess.Popen([sys.executable, "stages/train.py"], cwd=box, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.time() + 300
    while time.time() < deadline:
        last = box / "models/last.pt"
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.2)
    time.sleep(0.7)                                    # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(box / "models/last.pt", weights_only=True)["epoch"]
    assert proc.returncode == -signal.SIGKILL and 1 <= killed_at < 3

    out = _run(box, "stages/train.py")
    assert f"resuming after epoch {killed_at}" in out
    assert _outcome(box) == uninterrupted              # same metrics, same logs, same weights


def _decision(box) -> str:
    """The train stage's first line (it says whether it resumes), then stop it: no need to train."""
    proc = subprocess.Popen([sys.executable, "stages/train.py"], cwd=box, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        for line in proc.stdout:
            if line.startswith("train:"):
                return line
        return ""
    finally:
        proc.kill()
        proc.wait()


def test_a_finished_run_or_changed_params_start_fresh(box):
    if not (box / "models/last.pt").exists():
        _run(box, "stages/train.py")
    last = torch.load(box / "models/last.pt", weights_only=True)
    assert last["finished"] and "resuming" not in _decision(box)     # finished: a rerun restarts
    torch.save({**last, "finished": False}, box / "models/last.pt")
    assert "resuming after epoch 3" in _decision(box)                 # unfinished, same params: resumes
    params = yaml.safe_load((box / "params.yaml").read_text())
    params["train"]["epochs"] = 4
    (box / "params.yaml").write_text(yaml.safe_dump(params))
    assert "resuming" not in _decision(box)                           # other params: starts fresh
