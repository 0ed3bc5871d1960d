import copy
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import PARAMS, ROOT, stage_sandbox, with_change
from vpr.config import KINDS, validate
from vpr.data.samplers import PlaceBatchSampler
from vpr.errors import ConfigError


def test_shipped_params_are_valid():
    cfg = validate(copy.deepcopy(PARAMS))
    assert cfg.raw["loss"] == "multisimilarity" and list(cfg.eval.recall_values) == [1, 5, 10, 20]
    assert cfg.settings("loss") == {
        k: s.default for k, s in KINDS["loss"].entries["multisimilarity"].settings.items()
    }


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("lossses", {}, "lossses: unknown key 'lossses'; did you mean 'losses'?"),
        ("train.epochz", 3, "train.epochz: unknown key 'epochz'; did you mean 'epochs'?"),
        (
            "loss",
            "circel",
            "loss: unknown name 'circel'; did you mean 'circle'? (allowed: contrastive, triplet,",
        ),
        ("backbone", "resnet19", "backbone: unknown name 'resnet19'; did you mean 'resnet18'?"),
        ("optimizers.adam.lr", -0.1, "optimizers.adam.lr: must be > 0, got -0.1"),
        ("optimizers.adam.lrr", 0.1, "optimizers.adam.lrr: unknown key 'lrr'; did you mean 'lr'?"),
        ("losses.circle.m", "big", "losses.circle.m: expected a number like 0.4, got 'big'"),
        ("losses.circle.gamma", -1.0, "losses.circle.gamma: must be > 0"),
        (
            "miners.triplet_margin.type_of_triplets",
            "hardest",
            "type_of_triplets: 'hardest' is not one of",
        ),
        ("train.epochs", -1, "train.epochs: must be >= 0"),
        ("train.epochs", 2.5, "train.epochs: expected an integer like 5, got 2.5"),
        ("train.amp", "yes", "train.amp: expected true or false"),
        (
            "train.batches_per_epoch",
            "ten",
            "train.batches_per_epoch: expected an integer or null, got 'ten'",
        ),
        ("train.image_size", "big", "train.image_size: expected a list"),
        ("seed", "zero", "seed: expected an integer like 0, got 'zero'"),
        ("train.select_best_by", "R@3", "train.select_best_by: 'R@3' is not one of"),
        ("data.test", {}, "data.test: the list of evaluation sets is empty"),
        ("datasets", {}, "datasets: expected at least one dataset"),
        ("datasets.synth.source", "ftp", "datasets.synth.source: 'ftp' is not one of"),
        ("data.val", "nowhere/val", "data.val: 'nowhere/val' must be a folder under data/raw"),
        ("eval.recall_values", [5, 1], "eval.recall_values: must be increasing positive integers"),
        ("gt.radius_m", 0, "gt.radius_m: must be > 0"),
        ("synthetic.light_mix", [0.5, 0.5, 0.5], "synthetic.light_mix: must be three fractions"),
        ("augment", [{"name": "solarize"}], "augment[0].name: unknown name 'solarize'"),
        ("scheduler", "cosin", "scheduler: unknown name 'cosin'; did you mean 'cosine'?"),
        (
            "train.method",
            "sift",
            "train.method: unknown name 'sift' (allowed: places, triplet_mining,",
        ),
        ("methods.cosplace.K", 3, "methods.cosplace.K: unknown key 'K'"),
        (
            "domain_adaptation.lambda",
            1.0,
            "domain_adaptation.lambda: unknown key 'lambda'; did you mean 'grl_lambda'?",
        ),
        ("self_supervised.weight", -1, "self_supervised.weight: must be >= 0"),
        ("extract.fusion", "median", "extract.fusion: 'median' is not one of: avg, sum, max, min"),
        ("extract.scales", [], "extract.scales: must not be empty"),
        (
            "extract.ensemble",
            [{"path": "x.pt"}],
            "extract.ensemble: item 0: expected {checkpoint: <path>} or {experiment",
        ),
        (
            "extract.ensemble",
            [{"experiment": "x", "weight": "1"}],
            "extract.ensemble: item 0: weight must be a number > 0",
        ),
        ("extract.pca", {"dim": 0}, "extract.pca: dim must be a positive integer or null"),
        (
            "synthetic.extra_sets",
            ["gan"],
            "synthetic.extra_sets: every item must be one of mining, target_night",
        ),
        (
            "data.mining",
            "elsewhere/mining",
            "data.mining: 'elsewhere/mining' must be a folder under data/raw",
        ),
    ],
)
def test_bad_params_give_one_clear_line(path, value, message):
    with pytest.raises(ConfigError) as err:
        validate(with_change(path, value))
    text = str(err.value)
    assert message in text and "\n" not in text


def test_images_per_place_larger_than_the_smallest_place_is_refused():
    offsets = np.array([0, 4, 9, 12])  # the smallest place has 3 images
    with pytest.raises(
        ConfigError,
        match="train.images_per_place: 4 is larger than the smallest place \\(3 images\\)",
    ):
        PlaceBatchSampler(offsets, np.arange(12), places_per_batch=2, images_per_place=4)


@pytest.mark.parametrize(
    "stage,path,value",
    [
        ("train", "optimizers.adam.lr", -1.0),
        ("train", "train.epochz", 1),
        ("fetch", "datasets.synth.source", "ftp"),
        ("build_gt", "data.test", {}),
        ("evaluate", "eval.recall_values", [5, 1]),
    ],
)
def test_stages_stop_before_any_work_with_exit_code_2(tmp_path, stage, path, value):
    box = stage_sandbox(tmp_path, with_change(path, value))
    before = sorted(p.relative_to(box) for p in box.rglob("*") if "__pycache__" not in p.parts)
    args = [sys.executable, f"stages/{stage}.py"] + (["synth"] if stage == "fetch" else [])
    proc = subprocess.run(
        args,
        cwd=box,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and path.split(".")[0] in lines[0], (
        proc.stderr
    )
    after = sorted(p.relative_to(box) for p in box.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # nothing written, nothing removed
    assert (box / "models" / "best.pt").read_bytes() == b"previous model"


def test_each_stage_checks_only_what_it_reads():
    from vpr.config import READS, load_config

    bad_loss = with_change("losses.circle.m", -1)
    for stage in ("fetch", "build_gt", "extract", "evaluate", "recall_table", "visualize"):
        validate(bad_loss, READS[stage])  # the loss is none of their business
    with pytest.raises(ConfigError, match="losses.circle.m"):
        validate(bad_loss, READS["train"])
    with pytest.raises(ConfigError, match="losses.circle.m"):
        validate(bad_loss, READS["report"])  # the report shows every param
    assert load_config(ROOT / "params.yaml", "evaluate").eval.recall_values == [1, 5, 10, 20]


def test_validating_params_imports_neither_torch_nor_the_model_zoo():
    code = (
        "import sys; from vpr.config import READS, load_config\n"
        "for stage in READS: load_config('params.yaml', stage)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'faiss') "
        "or m.startswith('vpr.models')], sorted(sys.modules)"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def test_importing_the_library_does_not_import_torch_until_needed():
    code = (
        "import sys; import vpr, vpr.config, vpr.eval.evaluate; assert 'torch' not in sys.modules; "
        "import vpr.models.backbones, torchvision; assert torchvision.models.resnet18"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def test_validate_leaves_the_params_it_reads_unchanged():
    """Validation fills defaults into its own view only: the caller's dict (written back by suites and
    recipes) keeps exactly what the user wrote."""
    raw = copy.deepcopy(PARAMS)
    raw["data_profiles"]["course"]["night"]["tokyo_xs_test"] = {"name": "tokyo_night"}
    before = copy.deepcopy(raw)
    validate(raw)
    assert raw == before
