"""The research extensions: multi-scale testing, ensembles, PCA, domain adaptation (gradient reversal),
self-supervised VICReg, triplet mining, CosPlace groups, extra training images."""
import copy
import itertools
import math
import os
import shutil

import numpy as np
import pytest
import torch

from vpr.data.filenames import parse_name
from tests.helpers import eval_set
from vpr.data.groundtruth import TrainingData, build_train_set
from vpr.eval.descriptors import PCA, concat_ensemble, fuse_scales
from vpr.eval.extract import compute_descriptors
from vpr.models.network import build_model, model_spec
from vpr.train.methods.cosplace import class_and_group, make_groups
from vpr.train.addons.domain_adaptation import GradientReversal
from vpr.train.setup import build_training
from vpr.train.methods.triplet_mining import TripletMiner
from tests.helpers import TRAIN_SIZE, train_config, two_steps


@pytest.fixture(scope="module")
def data(tiny_city):
    """Places, a database/queries set to mine (the tiny val city) and unlabeled 'target' images."""
    return TrainingData(build_train_set(tiny_city / "train"), eval_set(tiny_city / "val"),
                        eval_set(tiny_city / "test").queries_paths)


def test_fusion_rules_on_known_descriptors():
    per_scale = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[3.0, 1.0]]])       # 3 scales, 1 image, 2-D
    expect = {"avg": [4 / 3, 1.0], "sum": [4.0, 3.0], "max": [3.0, 2.0], "min": [0.0, 0.0]}
    for rule, raw in expect.items():
        fused = fuse_scales(per_scale, rule)
        raw = torch.tensor([raw])
        assert torch.allclose(fused, raw / raw.norm().clamp(min=1e-12)), rule


def test_multiscale_extraction_fuses_the_single_scale_descriptors(tiny_city):
    torch.manual_seed(0)
    model = build_model(model_spec(train_config().raw, TRAIN_SIZE)).eval()
    paths = eval_set(tiny_city / "test").queries_paths[:6]
    multi = compute_descriptors(model, paths, TRAIN_SIZE, scales=[0.75, 1.0, 1.5], fusion="max")
    assert multi.shape == (6, model.descriptor_dim) and np.allclose(np.linalg.norm(multi, axis=1), 1, atol=1e-5)
    single = compute_descriptors(model, paths, TRAIN_SIZE)
    assert not np.allclose(multi, single, atol=1e-3)           # the other scales changed something
    same = compute_descriptors(model, paths, TRAIN_SIZE, scales=[1.0, 1.0], fusion="avg")
    assert np.allclose(same, single, atol=1e-5)                # fusing a scale with itself changes nothing


def test_ensemble_concatenates_weighted_normalised_descriptors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 3)) * 10
    out = concat_ensemble([a, b], [1.0, 0.5])
    assert out.shape == (5, 7) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # each model's part keeps its direction; the weights set the parts' relative norms (1 : 0.5)
    assert np.allclose(np.linalg.norm(out[:, :4], axis=1) / np.linalg.norm(out[:, 4:], axis=1), 2.0, atol=1e-5)


def test_pca_reduces_and_whitening_equalises_variances():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 16)) * np.geomspace(10, 0.1, 16)).astype(np.float32)
    reduced = PCA(x, 4)(x)
    assert reduced.shape == (500, 4) and np.allclose(np.linalg.norm(reduced, axis=1), 1, atol=1e-5)
    raw = PCA(x, 4, whiten=True).matrix.apply(x)
    assert np.allclose(raw.std(0), raw.std(0).mean(), rtol=0.05)
    plain = PCA(x, 4).matrix.apply(x)
    assert plain.std(0)[0] > 2 * plain.std(0)[3]              # without whitening: 10 vs ~4


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    (GradientReversal(0.5)(x) * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(3.0).expand(4, 3))
    y = torch.randn(4, 3)
    assert torch.equal(GradientReversal(0.5)(y), y)            # identity forward


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
            assert max(de, dn) >= N or dh >= L, (c1, c2)      # never neighbours in space and heading
    built = make_groups(utm, heading, M, alpha, N, L, min_images_per_class=1, groups_num=8)
    assert len(built) == 8 and all(len(g) > 0 for g in built)


def test_mining_takes_positives_within_10m_and_negatives_beyond_25m(data):
    torch.manual_seed(0)
    model = build_model(model_spec(train_config().raw, TRAIN_SIZE))
    miner = TripletMiner(data.mining, TRAIN_SIZE, 10.0, 25.0, negatives=5, negatives_sample=100, batch_size=32,
                         device="cpu")
    rng = np.random.default_rng(0)
    triplets = miner.mine(model, miner.usable[:8], rng)
    s = data.mining
    assert len(triplets) > 0
    q_desc = compute_descriptors(model, s.queries_paths, TRAIN_SIZE)
    db_desc = compute_descriptors(model, s.database_paths, TRAIN_SIZE)
    for q, p, negs in triplets:
        assert np.linalg.norm(s.database_utm[p] - s.queries_utm[q]) <= 10.0
        assert (np.linalg.norm(s.database_utm[negs] - s.queries_utm[q], axis=1) > 25.0).all()
        candidates = miner.positives[q]                         # the positive is the nearest in feature space
        dist = ((db_desc[candidates] - q_desc[q]) ** 2).sum(1)
        assert p == candidates[np.argmin(dist)]
        assert len(negs) == 5 and len(set(negs)) == 5


@pytest.mark.parametrize("method", ["triplet_mining", "cosplace", "self_supervised"])
def test_every_training_method_trains(method, data):
    settings = {"triplet_mining": {"queries_per_epoch": 8, "cache_refresh_rate": 8, "queries_per_batch": 2,
                                   "negatives": 3, "negatives_sample": 60},
                "cosplace": {"min_images_per_class": 1, "batch_size": 4, "groups_num": 4},
                "self_supervised": {"batch_size": 8}}[method]
    training = two_steps(train_config(train__method=method, **{f"methods__{method}": settings}), data)
    if method == "cosplace":                                   # one classifier per group, rotating by epoch
        heads = training.objective.heads
        assert len(heads) == 4
        groups = [next(iter(training.batches(e)))["group"] for e in (1, 2, 5)]
        assert groups == [0, 1, 0]


def test_domain_adaptation_and_vicreg_terms_join_any_method(data):
    cfg = train_config(domain_adaptation={"enabled": True, "weight": 0.5}, self_supervised={"enabled": True})
    training = two_steps(cfg, data)
    batch = next(iter(training.batches(1)))
    assert batch["target_images"].shape == batch["images"].shape        # balanced source / target
    assert batch["views"].shape == batch["images"].shape                 # a second view for VICReg
    loss, logs = training.objective(training.model, batch)
    assert {"metric_loss", "domain_loss", "vicreg_loss"} <= set(logs) and math.isfinite(loss.item())
    classifier = training.objective.terms[-1].classifier
    assert any(id(p) in {id(q) for g in training.optimizer.param_groups for q in g["params"]}
               for p in classifier.parameters())


def test_extra_images_join_the_places_named_in_their_note(tiny_city, tmp_path):
    from vpr.data.layouts import add_extra_images
    train = build_train_set(tiny_city / "train")
    extra = tmp_path / "night_copies"
    extra.mkdir()
    for p in train.paths[:6]:                                  # "GAN outputs" named like their source
        shutil.copy(p, extra / os.path.basename(p))
    stray = train.paths[0]
    name = os.path.basename(stray).replace(parse_name(stray).note, "99999_Nowhere").replace("@00@", "@02@", 1)
    shutil.copy(stray, extra / name)
    merged, info = add_extra_images(train, [str(extra)])
    assert info == {"extra_images": 6, "extra_images_unknown_place": 1}
    assert len(merged.paths) == len(train.paths) + 6 and merged.num_places == train.num_places
    for p in train.paths[:6]:
        place = train.place_of_image[list(train.paths).index(p)]
        name = train.place_names[place]
        assert merged.place_sizes[list(merged.place_names).index(name)] > train.place_sizes[place]


def test_describe_combines_an_ensemble_multiscale_and_pca(tiny_city):
    from vpr.eval.extract import describe
    s = eval_set(tiny_city / "test")
    torch.manual_seed(0)
    gem = build_model(model_spec(train_config().raw, TRAIN_SIZE)).eval()
    avg = build_model(model_spec(train_config(aggregator="avg").raw, TRAIN_SIZE)).eval()
    parts = {"database": s.database_paths[:40], "queries": s.queries_paths[:10]}
    out = describe([(gem, 1.0), (avg, 0.5)], parts, TRAIN_SIZE, scales=[1.0, 0.8], fusion="avg")
    dim = gem.descriptor_dim + avg.descriptor_dim
    assert out["database"].shape == (40, dim) and out["queries"].shape == (10, dim)
    reduced = describe([(gem, 1.0)], parts, TRAIN_SIZE, pca={"dim": 16, "fit_on": "database", "whiten": True})
    assert reduced["queries"].shape == (10, 16)
    assert np.allclose(np.linalg.norm(reduced["queries"], axis=1), 1, atol=1e-5)
