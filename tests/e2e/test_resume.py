"""Training survives kills: `dvc repro` reruns the train stage, which continues from models/last.pt; killed three
times at random (seeded) points inside epochs, it ends with the metrics and weights of an uninterrupted run."""

import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.helpers import ROOT, TINY, merge

pytestmark = pytest.mark.slow


def _run(box, *args, check=True):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=box,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    box = tmp_path_factory.mktemp("resume")
    for d in ("stages", "src"):
        shutil.copytree(
            ROOT / d, box / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    params["train"].update(
        epochs=3, batches_per_epoch=6, places_per_batch=4, patience=0
    )  # 16 images a batch
    (box / "params.yaml").write_text(yaml.safe_dump(params))
    _run(box, "stages/fetch.py", "synth")
    _run(box, "stages/build_gt.py")
    return box


def _digest(weights) -> str:
    return hashlib.sha256(b"".join(v.numpy().tobytes() for v in weights.values())).hexdigest()


def _outcome(box):
    """What a run ends with: metrics.json, the dvclive logs, best and last weights, the epoch history."""
    metrics = json.loads((box / "metrics/train/metrics.json").read_text())
    logs = {p.name: p.read_text() for p in (box / "metrics/train/plots/metrics").glob("*.tsv")}
    best, last = (torch.load(box / f"models/{n}.pt", weights_only=True) for n in ("best", "last"))
    history = repr(
        [{k: v for k, v in row.items() if k != "seconds"} for row in last["loop"]["history"]]
    )
    return (
        metrics,
        logs,
        _digest(best["model"]),
        _digest(last["model"]),
        history,
    )  # repr: nan == nan


def _clean(box):
    shutil.rmtree(box / "models", ignore_errors=True)
    shutil.rmtree(box / "metrics", ignore_errors=True)


@pytest.fixture(scope="module")
def uninterrupted(box):
    _clean(box)
    _run(box, "stages/train.py")
    return _outcome(box)


KILL_SEED = 7  # random kill points, reproducible
PROGRESS = {"TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}  # a progress line per batch, on stderr


def _kill_points(seed, kills, epochs, batches):
    """(epoch, batches done) at which each kill lands, in the order a resumed run reaches them."""
    rng = random.Random(seed)
    return sorted((rng.randint(1, epochs), rng.randrange(batches)) for _ in range(kills))


def _train_until_killed(box, epoch, done, timeout=300) -> str:
    """Run the train stage; SIGKILL it as soon as its progress bar says ``done`` batches of ``epoch`` ran; its
    stdout (the first line says whether it resumed)."""
    env = {**{k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}, **PROGRESS}
    mark = re.compile(rb"epoch %d/\d+: +%dbatch" % (epoch, done))
    with open(box / "train.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "stages/train.py"],
            cwd=box,
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
    seen, deadline = b"", time.time() + timeout
    try:
        while not mark.search(seen, max(0, len(seen) - 4096)):
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.time()))
            chunk = os.read(proc.stderr.fileno(), 1 << 16) if ready else b""
            assert chunk, (
                f"the stage ended or stalled before epoch {epoch}, batch {done}:\n{seen[-3000:]!r}"
            )
            seen += chunk
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return (box / "train.out").read_text()


def _resumed_after(out: str) -> int | None:
    found = re.search(r"resuming after epoch (\d+)", out)
    return int(found.group(1)) if found else None


def test_killed_three_times_at_random_points_training_ends_like_an_uninterrupted_run(
    box, uninterrupted
):
    train = yaml.safe_load((box / "params.yaml").read_text())["train"]
    points = _kill_points(KILL_SEED, 3, train["epochs"], train["batches_per_epoch"])
    print(f"kill points (epoch, batches done): {points}")
    _clean(box)
    killed_at = None
    for epoch, done in points:
        out = _train_until_killed(box, epoch, done)
        assert _resumed_after(out) == killed_at, (
            out
        )  # each rerun continues from the last kill's last.pt
        last = box / "models/last.pt"
        killed_at = torch.load(last, weights_only=True)["epoch"] if last.exists() else None
        assert killed_at == epoch - 1, (
            epoch,
            done,
        )  # killed inside the epoch, before its checkpoint
    out = _run(box, "stages/train.py")
    assert _resumed_after(out) == killed_at, out
    assert _outcome(box) == uninterrupted  # same metrics, logs, history and weights


def _decision(box) -> str:
    """The train stage's first line (it says whether it resumes), then stop it: no need to train."""
    proc = subprocess.Popen(
        [sys.executable, "stages/train.py"],
        cwd=box,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
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
    assert last["finished"] and "resuming" not in _decision(box)  # finished: a rerun restarts
    torch.save({**last, "finished": False}, box / "models/last.pt")
    assert "resuming after epoch 3" in _decision(box)  # unfinished, same params: resumes
    params = yaml.safe_load((box / "params.yaml").read_text())
    params["train"]["epochs"] = 4
    (box / "params.yaml").write_text(yaml.safe_dump(params))
    assert "resuming" not in _decision(box)  # other params: starts fresh
