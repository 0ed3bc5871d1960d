"""Methods named after a paper compute what the paper's reference code computes (one test per method, each
encoding the reference's math, not ours)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES


def _gem(x, p, eps=1e-6):
    """GeM as in the references (CosPlace layers.gem, benchmark functional.gem)."""
    return F.avg_pool2d(x.clamp(min=eps).pow(p), (x.size(-2), x.size(-1))).pow(1.0 / p).flatten(1)


# --- NetVLAD (deep-visual-geo-localization-benchmark model/aggregation.py, the "vlad" formulation) -----------


def _local_features(n=3000, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim)) * 3
    return (centres[rng.integers(6, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_netvlad_is_initialised_as_the_benchmarks_vlad_formulation():
    import faiss

    local = _local_features()
    agg = AGGREGATORS.build("netvlad", 16, (4, 4), settings={"clusters": 8})
    agg.init_from_local_features(local.copy(), seed=0)
    # reference: k-means (100 iterations) on L2-normalised local features; the centroids stay as k-means gives
    # them; assignment = alpha * L2-normalised centroids, no bias; alpha = -ln(0.01) / mean gap between the
    # two largest dot products of a descriptor with the normalised centroids
    unit_local = local / np.linalg.norm(local, axis=1, keepdims=True)
    kmeans = faiss.Kmeans(16, 8, niter=100, seed=0, verbose=False)
    kmeans.train(unit_local)
    centroids = kmeans.centroids
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    dots = np.sort(unit_local @ unit.T, axis=1)
    alpha = -np.log(0.01) / np.mean(dots[:, -1] - dots[:, -2])
    assert np.allclose(agg.centroids.detach().numpy(), centroids, atol=1e-5)
    assert agg.alpha == pytest.approx(alpha, rel=1e-4)
    assert np.allclose(
        agg.assign.weight.detach().numpy()[:, :, 0, 0], alpha * unit, rtol=1e-4, atol=1e-5
    )
    assert agg.assign.bias is None or not agg.assign.bias.detach().any()
    # so a descriptor's second-nearest cluster gets about 1 % of the weight of the first (geometric mean)
    logits = torch.from_numpy(unit_local) @ agg.assign.weight.detach()[:, :, 0, 0].T
    top2 = torch.log_softmax(logits, 1).topk(2, dim=1).values
    assert (top2[:, 1] - top2[:, 0]).mean().item() == pytest.approx(math.log(0.01), rel=1e-3)


# --- CosPlace head (CosPlace cosplace_model/cosplace_network.py) -------------------------------------------


def test_cosplace_head_normalises_channels_before_gem_then_fc_then_l2():
    from vpr.models.network import VPRNet

    torch.manual_seed(0)
    head = AGGREGATORS.build("cosplace", 32, (5, 6), settings={"fc_output_dim": 8})
    net = VPRNet(nn.Identity(), head)
    x = torch.rand(4, 32, 5, 6) * 3
    # reference: L2Norm (over channels) -> GeM -> Flatten -> Linear -> L2Norm
    reference = F.normalize(head.fc(_gem(F.normalize(x, dim=1), head.gem.p)), dim=1)
    assert torch.allclose(net(x), reference, atol=1e-6)


# --- VGG-16 (benchmark model/network.py and CosPlace: features[:-2]) ----------------------------------------


def test_vgg16_ends_at_conv5_3_before_its_relu():
    trunk = BACKBONES.build("vgg16", settings={"pretrained": False})
    last = list(trunk.stages[-1].children())[-1]
    assert isinstance(last, nn.Conv2d) and last.out_channels == 512
    with torch.no_grad():
        out = trunk(torch.randn(1, 3, 64, 64))
    assert (
        out.shape[1] == 512 and out.shape[-1] == 4 and (out < 0).any()
    )  # no ReLU: negative values stay


# --- GeM with the benchmark's `--l2 before_pool` -------------------------------------------------------------


def test_gem_can_normalise_local_features_before_pooling():
    torch.manual_seed(0)
    x = torch.rand(3, 16, 4, 5) * 2
    before = AGGREGATORS.build("gem", 16, (4, 5), settings={"l2": "before_pool"})
    after = AGGREGATORS.build("gem", 16, (4, 5), settings={"l2": "after_pool"})
    assert torch.allclose(before(x), _gem(F.normalize(x, dim=1), 3.0), atol=1e-6)
    assert torch.allclose(
        after(x), _gem(x, 3.0), atol=1e-6
    )  # today's (the network L2-normalises after)


# --- MixVPR (amaralibey/MixVPR models/aggregators/mixvpr.py: FeatureMixerLayer) -----------------------------


def test_mixvpr_mixer_layers_start_from_a_truncated_normal_of_std_002_and_zero_bias():
    torch.manual_seed(0)
    agg = AGGREGATORS.build("mixvpr", 64, (20, 20), settings={"out_channels": 32, "out_rows": 2})
    mixer_linears = [m for mixer in agg.mixers for m in mixer.modules() if isinstance(m, nn.Linear)]
    assert len(mixer_linears) == 2 * 4
    weights = torch.cat([m.weight.detach().flatten() for m in mixer_linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.03)
    assert (
        weights.abs().max().item() <= 2.0
    )  # truncation bounds of torch.nn.init.trunc_normal_ (a=-2, b=2)
    assert all(not m.bias.detach().any() for m in mixer_linears)


# --- VICReg (Bardes et al.; pytorch-metric-learning VICRegLoss): on an expander over unnormalised features ----


def test_vicreg_reads_an_expander_over_the_unnormalised_descriptors_of_both_views():
    from pytorch_metric_learning.losses import VICRegLoss

    from vpr.config.loader import check_settings
    from vpr.config.sections import SELF_SUPERVISED
    from vpr.models.network import VPRNet
    from vpr.train.addons.vicreg import VICRegTerm

    torch.manual_seed(0)
    settings = check_settings(
        "self_supervised", SELF_SUPERVISED, {"enabled": True, "expander": [64, 64]}
    )
    model = VPRNet(nn.Conv2d(3, 16, 3), AGGREGATORS.build("avg", 16, (6, 6)))
    term = VICRegTerm(model.descriptor_dim, settings)
    images, views = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    descriptors, features = model(images, return_features=True)
    loss, _ = term(model, {"views": views}, {"descriptors": descriptors, "features": features})
    # reference: expander(unnormalised global descriptor) of each view into VICReg
    plain = lambda x: model.aggregator(model.backbone(x))  # noqa: E731  (no projection, no L2)
    reference = VICRegLoss(25.0, 25.0, 1.0)(
        term.expander(plain(images)), ref_emb=term.expander(plain(views))
    )
    assert loss.item() == pytest.approx(0.3 * reference.item(), rel=1e-5)
    assert plain(images).norm(dim=1).std() > 0.01  # what the expander reads is not unit-norm


# --- Gradient reversal (Ganin & Lempitsky, ICML 2015, sec. 5): lambda_p = 2 / (1 + exp(-10 p)) - 1 ------------


def test_gradient_reversal_can_follow_the_ganin_schedule_over_training():
    from vpr.train.addons.domain_adaptation import GradientReversal

    total = 40
    grl = GradientReversal(0.5, "ganin", total_steps=total)
    for step in range(total + 5):
        x = torch.ones(3, requires_grad=True)
        grl(x).sum().backward()
        p = min(1.0, step / total)
        expected = 0.5 * (2 / (1 + math.exp(-10 * p)) - 1)
        assert x.grad.tolist() == pytest.approx([-expected] * 3, abs=1e-7), step
    constant = GradientReversal(0.5, "constant", total_steps=total)
    x = torch.ones(3, requires_grad=True)
    constant(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([-0.5] * 3)
    assert "step" in dict(grl.named_buffers())  # checkpointed: a resumed run continues the schedule


# --- GSV-Cities' shuffle_all=False (dataloaders/train/GSVCitiesDataset.py): places shuffled within their city,
#     cities one after the other, consecutive places batched ----------------------------------------------------


def test_city_batches_take_their_places_from_one_city_at_a_time():
    from types import SimpleNamespace

    from vpr.data.groundtruth import Positives
    from vpr.data.samplers import SAMPLERS

    cities = np.array(["Rome"] * 40 + ["Paris"] * 24 + ["Madrid"] * 32)
    places = Positives.from_lists([[4 * p + i for i in range(4)] for p in range(len(cities))])
    train_set = SimpleNamespace(
        place_offsets=places.offsets, place_images=places.indices, place_city=cities
    )
    sampler = SAMPLERS.build("places", train_set, 8, 4, 0, None, settings={"city_batches": True})
    sampler.set_epoch(1)
    batch_cities = [sorted({cities[i // 4] for i in batch}) for batch in sampler]
    assert len(batch_cities) == len(cities) // 8
    assert [c[0] for c in batch_cities] == ["Madrid"] * 4 + ["Paris"] * 3 + [
        "Rome"
    ] * 5  # one city at a time
    assert all(
        len(c) == 1 for c in batch_cities
    )  # (city sizes are multiples of 8 here: no batch straddles)
    mixed = SAMPLERS.build("places", train_set, 8, 4, 0, None)
    mixed.set_epoch(1)
    assert (
        sum(len({cities[i // 4] for i in batch}) > 1 for batch in mixed) > 6
    )  # the default mixes cities


# --- PCA: fitted on training images unless the evaluated database is asked for (transductive) ---------------


def test_pca_is_fitted_on_training_images_by_default_and_fitting_on_the_database_warns(tiny_city):
    from tests.helpers import ROOT, eval_set
    from vpr.config import load_config
    from vpr.data.groundtruth import build_train_set
    from vpr.errors import DataWarning
    from vpr.eval.extract import describe
    from vpr.models.network import build_model

    assert load_config(ROOT / "params.yaml").extract.pca["fit_on"] == "train"
    torch.manual_seed(0)
    model = build_model(
        dict(
            backbone="resnet18",
            backbone_settings=BACKBONES.check("resnet18", {}),
            aggregator="gem",
            aggregator_settings=AGGREGATORS.check("gem", {}),
            descriptor_dim=None,
            image_size=[48, 64],
        )
    )
    s = eval_set(tiny_city / "test")
    parts = {"database": s.database_paths, "queries": s.queries_paths}
    train = build_train_set(tiny_city / "train").paths[:40]
    with pytest.warns(DataWarning, match="transductive"):
        describe(
            [(model, 1.0)], parts, (48, 64), pca={"dim": 8, "fit_on": "database", "whiten": False}
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        out = describe(
            [(model, 1.0)],
            parts,
            (48, 64),
            pca={"dim": 8, "fit_on": "train", "whiten": False},
            pca_train_paths=train,
        )
    assert out["database"].shape[1] == 8


# --- Multi-scale testing: each scale prepared from the decoded image -----------------------------------------


def test_each_scale_of_multi_scale_testing_is_prepared_from_the_decoded_image(tmp_path):
    from PIL import Image

    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import ImagePrep
    from vpr.models.network import build_model

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):  # detailed photos, larger than the extraction size
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 255, (192, 256, 3), dtype=np.uint8)).save(paths[-1])
    torch.manual_seed(0)
    model = build_model(
        dict(
            backbone="resnet18",
            backbone_settings=BACKBONES.check("resnet18", {}),
            aggregator="gem",
            aggregator_settings=AGGREGATORS.check("gem", {}),
            descriptor_dim=None,
            image_size=[48, 64],
        )
    )
    doubled = compute_descriptors(model, paths, (48, 64), scales=[2.0])
    reference = compute_descriptors(
        model, paths, ImagePrep((96, 128))
    )  # the photo resized to 96 x 128
    assert np.allclose(doubled, reference, atol=1e-5)


# --- Settings a method ignores are named, never silently dropped ---------------------------------------------


def test_choices_a_method_ignores_and_a_non_reference_aggregator_are_named():
    from vpr.train.methods import ignored_choices

    raw = {"loss": "circle", "miner": "multisimilarity", "sampler": "places", "aggregator": "gem"}
    assert ignored_choices("places", raw) == []
    lines = ignored_choices("cosplace", raw)
    assert len(lines) == 2 and "loss (circle)" in lines[0] and "CosFace" in lines[0]
    assert "aggregator: cosplace" in lines[1]
    assert ignored_choices("cosplace", {**raw, "aggregator": "cosplace"}) == [lines[0]]
    assert "triplet margin loss" in ignored_choices("triplet_mining", raw)[0]


# --- Per-module learning rates (backbone vs aggregator / head) ----------------------------------------------


def test_the_head_can_learn_at_its_own_rate():
    from vpr.models.network import build_model
    from vpr.train.optim import OPTIMIZERS
    from vpr.train.setup import model_param_groups

    model = build_model(
        dict(
            backbone="resnet18",
            backbone_settings=BACKBONES.check("resnet18", {}),
            aggregator="cosplace",
            aggregator_settings=AGGREGATORS.check("cosplace", {}),
            descriptor_dim=None,
            image_size=[48, 64],
        )
    )
    optimizer = OPTIMIZERS.build("adam", model_param_groups(model, 0.01), settings={"lr": 1e-5})
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert {lr_of[id(p)] for p in model.backbone.parameters()} == {1e-5}
    assert {lr_of[id(p)] for p in model.aggregator.parameters()} == {0.01}
    single = OPTIMIZERS.build("adam", model_param_groups(model, None), settings={"lr": 1e-5})
    assert len(single.param_groups) == 1 and single.param_groups[0]["lr"] == 1e-5


# --- The benchmark's query-side test methods (deep-visual-geo-localization-benchmark test.py) -----------------


def _benchmark_merge(distances, predictions, method, weight=0.01):
    """test.py's nearest_crop / maj_voting merge, for queries of 5 crops x 20 predictions."""
    predictions, distances = predictions.copy(), distances.copy().astype(np.float64)
    q_num = len(predictions) // 5
    if method == "nearest_crop":
        distances, predictions = distances.reshape(q_num, 100), predictions.reshape(q_num, 100)
        for q in range(q_num):
            order = np.argsort(distances[q], kind="stable")
            predictions[q] = predictions[q, order]
            _, unique = np.unique(predictions[q], return_index=True)
            predictions[q, :20] = predictions[q, np.sort(unique)][:20]
        return predictions[:, :20]
    distances, predictions = distances.reshape(q_num, 5, 20), predictions.reshape(q_num, 5, 20)
    for q in range(q_num):
        for n, selected in ((1, 0), (5, slice(0, 5)), (10, slice(0, 10))):
            vals, counts = np.unique(predictions[q][:, selected], return_counts=True)
            for val, count in zip(vals[counts > 1], counts[counts > 1]):
                mask = predictions[q][:, selected] == val
                distances[q][:, selected][mask] -= weight * count / n
        dists, preds = distances[q].flatten(), predictions[q].flatten()
        preds = preds[np.argsort(dists, kind="stable")]
        _, unique = np.unique(preds, return_index=True)
        predictions[q, 0, :20] = preds[np.sort(unique)][:20]
    return predictions[:, 0, :20]


@pytest.mark.parametrize("method", ["nearest_crop", "maj_voting"])
def test_crop_merging_is_the_benchmarks(method):
    from vpr.eval.query_methods import merge_crops

    rng = np.random.default_rng(3)
    predictions = rng.integers(0, 40, size=(5 * 6, 20))  # 6 queries x 5 crops, repeats across crops
    distances = np.sort(rng.random((5 * 6, 20)), axis=1)
    ours = merge_crops(distances, predictions, 20, method)
    assert np.array_equal(ours, _benchmark_merge(distances, predictions, method))


def test_five_crops_are_the_corners_and_centre_of_the_shorter_side_square(tmp_path):
    from PIL import Image

    from vpr.eval.prepare import ImagePrep
    from vpr.eval.query_methods import query_prep

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 100, 3), dtype=np.uint8))
    crops = query_prep(ImagePrep((48, 64)), "five_crops")(img)
    assert tuple(crops.shape) == (5, 3, 48, 48)  # shorter side 60 -> 48, then 48 x 48 crops
    resized = ImagePrep((48, 64), "keep_aspect")(img)  # 48 x 80
    assert torch.equal(crops[0], resized[:, :48, :48]) and torch.equal(
        crops[1], resized[:, :48, -48:]
    )
    assert tuple(query_prep(ImagePrep((48, 64)), "central_crop")(img).shape) == (3, 48, 64)
