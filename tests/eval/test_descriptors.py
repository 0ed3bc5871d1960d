"""The research extensions on the evaluation side: multi-scale testing, ensembles, PCA (vpr.eval.descriptors and
vpr.eval.extract.describe). The training side (domain adaptation, VICReg, triplet mining, CosPlace groups, extra
training images): tests/train/test_extensions.py."""

import numpy as np
import torch

from tests.helpers import TRAIN_SIZE, eval_set, train_config
from vpr.eval.descriptors import PCA, concat_ensemble, fuse_scales
from vpr.eval.extract import compute_descriptors
from vpr.models.network import build_model, model_spec


def test_fusion_rules_on_known_descriptors():
    per_scale = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[3.0, 1.0]]])  # 3 scales, 1 image, 2-D
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
    assert multi.shape == (6, model.descriptor_dim) and np.allclose(
        np.linalg.norm(multi, axis=1), 1, atol=1e-5
    )
    single = compute_descriptors(model, paths, TRAIN_SIZE)
    assert not np.allclose(multi, single, atol=1e-3)  # the other scales changed something
    same = compute_descriptors(model, paths, TRAIN_SIZE, scales=[1.0, 1.0], fusion="avg")
    assert np.allclose(same, single, atol=1e-5)  # fusing a scale with itself changes nothing


def test_ensemble_concatenates_weighted_normalised_descriptors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 3)) * 10
    out = concat_ensemble([a, b], [1.0, 0.5])
    assert out.shape == (5, 7) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # each model's part keeps its direction; the weights set the parts' relative norms (1 : 0.5)
    assert np.allclose(
        np.linalg.norm(out[:, :4], axis=1) / np.linalg.norm(out[:, 4:], axis=1), 2.0, atol=1e-5
    )


def test_pca_reduces_and_whitening_equalises_variances():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 16)) * np.geomspace(10, 0.1, 16)).astype(np.float32)
    reduced = PCA(x, 4)(x)
    assert reduced.shape == (500, 4) and np.allclose(np.linalg.norm(reduced, axis=1), 1, atol=1e-5)
    raw = PCA(x, 4, whiten=True).matrix.apply(x)
    assert np.allclose(raw.std(0), raw.std(0).mean(), rtol=0.05)
    plain = PCA(x, 4).matrix.apply(x)
    assert plain.std(0)[0] > 2 * plain.std(0)[3]  # without whitening: 10 vs ~4


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
    reduced = describe(
        [(gem, 1.0)], parts, TRAIN_SIZE, pca={"dim": 16, "fit_on": "database", "whiten": True}
    )
    assert reduced["queries"].shape == (10, 16)
    assert np.allclose(np.linalg.norm(reduced["queries"], axis=1), 1, atol=1e-5)
