"""The research extensions on the training side: domain adaptation (gradient reversal), self-supervised VICReg,
triplet mining, CosPlace groups, extra training images. The evaluation side (multi-scale testing, ensembles, PCA):
tests/eval/test_descriptors.py."""

import itertools
import math
import os
import shutil

import numpy as np
import pytest
import torch

from tests.helpers import TRAIN_SIZE, eval_set, train_config, two_steps
from vpr.data.filenames import parse_name
from vpr.data.groundtruth import TrainingData, build_train_set
from vpr.eval.extract import compute_descriptors
from vpr.models.network import build_model, model_spec
from vpr.train.addons.domain_adaptation import GradientReversal
from vpr.train.methods.cosplace import class_and_group, make_groups
from vpr.train.methods.triplet_mining import TripletMiner


@pytest.fixture(scope="module")
def data(tiny_city):
    """Places, a database/queries set to mine (the tiny val city) and unlabeled 'target' images."""
    return TrainingData(
        build_train_set(tiny_city / "train"),
        eval_set(tiny_city / "val"),
        eval_set(tiny_city / "test").queries_paths,
    )


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    (GradientReversal(0.5)(x) * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(3.0).expand(4, 3))
    y = torch.randn(4, 3)
    assert torch.equal(GradientReversal(0.5)(y), y)  # identity forward


def test_cosplace_groups_never_hold_adjacent_classes():
    rng = np.random.default_rng(0)
    utm = rng.uniform(0, 300, (4000, 2))
    heading = rng.uniform(0, 360, 4000)
    M, alpha, N, L = 10.0, 30.0, 5, 2
    classes, groups = class_and_group(utm, heading, M, alpha, N, L)
    bins = int(360 / alpha)
    for g in np.unique(groups, axis=0):
        members = np.unique(classes[(groups == g).all(1)], axis=0)
        for c1, c2 in itertools.combinations(members, 2):
            de, dn = abs(c1[0] - c2[0]), abs(c1[1] - c2[1])
            dh = min(abs(c1[2] - c2[2]), bins - abs(c1[2] - c2[2]))
            assert max(de, dn) >= N or dh >= L, (c1, c2)  # never neighbours in space and heading
    built = make_groups(utm, heading, M, alpha, N, L, min_images_per_class=1, groups_num=8)
    assert len(built) == 8 and all(len(g) > 0 for g in built)


def test_mining_takes_positives_within_10m_and_negatives_beyond_25m(data):
    torch.manual_seed(0)
    model = build_model(model_spec(train_config().raw, TRAIN_SIZE))
    miner = TripletMiner(
        data.mining,
        TRAIN_SIZE,
        10.0,
        25.0,
        negatives=5,
        negatives_sample=100,
        batch_size=32,
        device="cpu",
    )
    rng = np.random.default_rng(0)
    triplets = miner.mine(model, miner.usable[:8], rng)
    s = data.mining
    assert len(triplets) > 0
    q_desc = compute_descriptors(model, s.queries_paths, TRAIN_SIZE)
    db_desc = compute_descriptors(model, s.database_paths, TRAIN_SIZE)
    for q, p, negs in triplets:
        assert np.linalg.norm(s.database_utm[p] - s.queries_utm[q]) <= 10.0
        assert (np.linalg.norm(s.database_utm[negs] - s.queries_utm[q], axis=1) > 25.0).all()
        candidates = miner.positives[q]  # the positive is the nearest in feature space
        dist = ((db_desc[candidates] - q_desc[q]) ** 2).sum(1)
        assert p == candidates[np.argmin(dist)]
        assert len(negs) == 5 and len(set(negs)) == 5


@pytest.mark.parametrize("method", ["triplet_mining", "cosplace", "self_supervised"])
def test_every_training_method_trains(method, data):
    settings = {
        "triplet_mining": {
            "queries_per_epoch": 8,
            "cache_refresh_rate": 8,
            "queries_per_batch": 2,
            "negatives": 3,
            "negatives_sample": 60,
        },
        "cosplace": {"min_images_per_class": 1, "batch_size": 4, "groups_num": 4},
        "self_supervised": {"batch_size": 8},
    }[method]
    training = two_steps(
        train_config(train__method=method, **{f"methods__{method}": settings}), data
    )
    if method == "cosplace":  # one classifier per group, rotating by epoch
        heads = training.objective.heads
        assert len(heads) == 4
        groups = [next(iter(training.batches(e)))["group"] for e in (1, 2, 5)]
        assert groups == [0, 1, 0]


def test_domain_adaptation_and_vicreg_terms_join_any_method(data):
    cfg = train_config(
        domain_adaptation={"enabled": True, "weight": 0.5}, self_supervised={"enabled": True}
    )
    training = two_steps(cfg, data)
    batch = next(iter(training.batches(1)))
    assert batch["target_images"].shape == batch["images"].shape  # balanced source / target
    assert batch["views"].shape == batch["images"].shape  # a second view for VICReg
    loss, logs = training.objective(training.model, batch)
    assert {"metric_loss", "domain_loss", "vicreg_loss"} <= set(logs) and math.isfinite(loss.item())
    classifier = training.objective.terms[-1].classifier
    assert any(
        id(p) in {id(q) for g in training.optimizer.param_groups for q in g["params"]}
        for p in classifier.parameters()
    )


def test_extra_images_join_the_places_named_in_their_note(tiny_city, tmp_path):
    from vpr.data.layouts import add_extra_images

    train = build_train_set(tiny_city / "train")
    extra = tmp_path / "night_copies"
    extra.mkdir()
    for p in train.paths[:6]:  # "GAN outputs" named like their source
        shutil.copy(p, extra / os.path.basename(p))
    stray = train.paths[0]
    name = (
        os.path.basename(stray)
        .replace(parse_name(stray).note, "99999_Nowhere")
        .replace("@00@", "@02@", 1)
    )
    shutil.copy(stray, extra / name)
    merged, info = add_extra_images(train, [str(extra)])
    assert info == {"extra_images": 6, "extra_images_unknown_place": 1}
    assert len(merged.paths) == len(train.paths) + 6 and merged.num_places == train.num_places
    for p in train.paths[:6]:
        place = train.place_of_image[list(train.paths).index(p)]
        name = train.place_names[place]
        assert merged.place_sizes[list(merged.place_names).index(name)] > train.place_sizes[place]
