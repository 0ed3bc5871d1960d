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

from tests.helpers import ROOT, TINY, merge

pytestmark = pytest.mark.slow


def _run(box, *args):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=box,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _params(box, **train):
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    params["optimizer"] = (
        "sgd"  # Adam's g / sqrt(v) would magnify float rounding of near-zero gradients
    )
    # a network without per-sample randomness (EfficientNet's drop-connect draws differ between one process
    # and two ranks): what is compared is the math of the global batch, not the random draws
    params["backbone"] = "resnet18"
    params["optimizers"]["sgd"]["lr"] = 0.01
    params["train"].update({"epochs": 2, "batches_per_epoch": 3, "patience": 0, **train})
    (box / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    box = tmp_path_factory.mktemp("ddp")
    for d in ("stages", "src"):
        shutil.copytree(
            ROOT / d, box / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
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
    from vpr.train.setup import build_training, run_fingerprint

    cwd = os.getcwd()
    os.chdir(box)
    try:
        cfg = load_config()
        if what == "fingerprint":
            return run_fingerprint(cfg, "data/gt/train", "data/gt/val")
        return build_training(cfg, load_train_set("data/gt/train")).model.state_dict()
    finally:
        os.chdir(cwd)


def _departure(box, one, two, initial) -> dict:
    """Per weight tensor: how far run ``two`` ended from run ``one``, relative to how far ``one`` moved."""
    a = torch.load(box / one / "models/last.pt", weights_only=True)["model"]
    b = torch.load(box / two / "models/last.pt", weights_only=True)["model"]
    return {
        name: ((w - b[name]).norm() / ((w - initial[name]).norm() + 1e-12)).item()
        for name, w in a.items()
        if w.is_floating_point() and (w - initial[name]).norm() > 0
    }


def _assert_same_training(box, one, two, initial, rounding: str):
    """``two`` trained like ``one`` up to float rounding. How far rounding alone takes float32 training here is
    measured, not guessed: ``rounding`` is a run of the same math with other kernels (channels-last off).
    Early gradients of this network are ill-conditioned (a float32 gradient of some BatchNorm and stem weights
    is off by ~1e-2 of its norm), so after a few SGD steps rounding alone moves the stem by ~10 % of its
    update on every CPU kind; a real departure (a gradient scaled wrongly, local BatchNorm statistics) is
    several times that and shows in every layer."""
    ours, reference = _departure(box, one, two, initial), _departure(box, one, rounding, initial)
    total = lambda d: sum(v * v for v in d.values()) ** 0.5  # noqa: E731
    assert total(ours) <= 3 * total(reference) + 1e-6, (
        sorted(ours.items(), key=lambda kv: -kv[1])[:3],
        total(reference),
    )
    assert max(ours.values()) <= 0.5, max(ours.items(), key=lambda kv: kv[1])
    a = torch.load(box / one / "models/last.pt", weights_only=True)
    b = torch.load(box / two / "models/last.pt", weights_only=True)
    for ra, rb in zip(a["loop"]["history"], b["loop"]["history"], strict=True):
        if ra["epoch"]:
            assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-3)
        for k in (
            "val_R@1",
            "val_R@5",
            "val_R@10",
            "val_R@20",
        ):  # 20 queries: one query is 5 points
            assert abs(ra[k] - rb[k]) <= 5.0 + 1e-9, (ra, rb)


def test_two_gloo_processes_train_like_one_process_on_the_same_global_batch(box):
    _train(box, 1, "single")
    _train(box, 1, "rounding", channels_last=False)  # same math, other kernels: rounding only
    out = _train(box, 2, "ddp")
    assert "2 processes (DDP)" in out and out.count("train: best epoch") == 1  # only rank 0 speaks
    _assert_same_training(box, "single", "ddp", _in_box(box, "weights"), "rounding")
    logged = (box / "ddp/metrics/train/plots/metrics/val_R@1.tsv").read_text().strip().splitlines()
    assert len(logged) == 1 + 3  # header + epochs 0..2, once
    summary = json.loads((box / "ddp/metrics/train/metrics.json").read_text())
    assert summary["epochs_run"] == 2


def test_an_interrupted_ddp_run_resumes_and_ends_like_an_uninterrupted_one(box):
    if not (box / "single").exists():
        _train(box, 1, "single")
    if not (box / "rounding").exists():
        _train(box, 1, "rounding", channels_last=False)
    # the checkpoint of a 2-process run of these params stopped after epoch 1 of 2: a one-epoch run's (its
    # state after epoch 1 is the same), marked unfinished and given the two-epoch run's fingerprint
    _train(box, 1, "one_epoch", epochs=1)
    checkpoint = torch.load(box / "one_epoch/models/last.pt", weights_only=True)
    _params(box, processes=2)
    checkpoint.update(finished=False, fingerprint=_in_box(box, "fingerprint"))
    out = _train(box, 2, "resumed", resume_from=checkpoint)
    assert "resuming after epoch 1" in out
    _assert_same_training(box, "single", "resumed", _in_box(box, "weights"), "rounding")


def _ddp_step(rank, store, queue):
    """One rank of a 2-process gloo group: float64 network wrapped for DDP, its half of a fixed global batch."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2
    )
    from vpr.train.distributed import Ranks, wrap

    model = _float64_network()
    wrapped = wrap(model, Ranks(rank=rank, world=2, local_rank=rank, local_world=2), "cpu", True)
    images, labels = _global_batch()
    _loss(wrapped(images[rank * 8 : (rank + 1) * 8]), labels).backward()
    queue.put(
        {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
        | {n: b.numpy().copy() for n, b in model.named_buffers() if b.is_floating_point()}
    )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _float64_network():
    from vpr.models.aggregators import AGGREGATORS
    from vpr.models.backbones import BACKBONES
    from vpr.models.network import build_model

    torch.manual_seed(0)
    spec = dict(
        backbone="resnet18",
        backbone_settings=BACKBONES.check("resnet18", {}),
        aggregator="gem",
        aggregator_settings=AGGREGATORS.check("gem", {}),
        descriptor_dim=None,
        image_size=[48, 64],
    )
    return build_model(spec).double().to(memory_format=torch.channels_last).train()


def _global_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 48, 64, generator=g, dtype=torch.float64), torch.arange(16) // 4


def _loss(descriptors, labels):
    from pytorch_metric_learning import losses, miners

    return losses.MultiSimilarityLoss(1, 50, 0)(
        descriptors, labels, miners.MultiSimilarityMiner(0.1)(descriptors, labels)
    )


def test_the_ddp_math_equals_one_process_exactly_in_float64(tmp_path):
    """Global-batch loss, gradient scaling, global BatchNorm statistics: in float64 (no rounding to speak of)
    two processes give one process's gradients and BatchNorm running statistics to 1e-9."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_step, args=(r, tmp_path / "store", queue)) for r in range(2)]
    for p in procs:
        p.start()
    per_rank = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    model = _float64_network()
    images, labels = _global_batch()
    _loss(model(images), labels).backward()
    ours = {n: p.grad for n, p in model.named_parameters()} | {
        n: b for n, b in model.named_buffers() if b.is_floating_point()
    }
    for name, want in ours.items():
        for got in per_rank:
            assert (torch.from_numpy(got[name]) - want).norm() <= 1e-9 * (want.norm() + 1e-12), name
