"""Every registry entry, built from params.yaml the way the train stage builds it, trains for two steps."""

import numpy as np
import pytest
import torch

from tests.helpers import PARAMS, TRAIN_SIZE, train_config, two_steps
from vpr.data.groundtruth import build_train_set
from vpr.data.samplers import SAMPLERS
from vpr.data.transforms import AUGMENTATIONS, augmentations
from vpr.models.aggregators import AGGREGATORS
from vpr.models.backbones import BACKBONES
from vpr.train.losses import LOSSES, MINERS
from vpr.train.optim import OPTIMIZERS, SCHEDULERS
from vpr.train.setup import build_training


@pytest.fixture(scope="module")
def train_set(tiny_city):
    return build_train_set(tiny_city / "train")


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_trains(name, train_set):
    pretrained = name == "efficientnet_lite0"  # the only weights available offline
    cfg = train_config(backbone=name, **{f"backbones__{name}__pretrained": pretrained})
    training = two_steps(cfg, train_set)
    assert training.model.descriptor_dim == training.model.backbone.out_channels


def test_freezing_stages_stops_their_gradients(train_set):
    training = build_training(
        train_config(backbone="resnet18", backbones__resnet18__freeze=2), train_set
    )
    stages = training.model.backbone.stages
    assert not any(p.requires_grad for s in stages[:2] for p in s.parameters())
    assert all(p.requires_grad for s in stages[2:] for p in s.parameters())


@pytest.mark.parametrize("name", AGGREGATORS.names())
def test_every_aggregator_trains(name, train_set):
    two_steps(train_config(aggregator=name), train_set)


def test_netvlad_and_mixvpr_sizes_follow_their_formulas(train_set):
    netvlad = build_training(
        train_config(aggregator="netvlad", aggregators__netvlad__clusters=16), train_set
    ).model
    assert (
        netvlad.descriptor_dim == 16 * netvlad.backbone.out_channels
        and netvlad.aggregator.initialized
    )  # K * C, k-means initialised
    mix = build_training(
        train_config(
            aggregator="mixvpr",
            aggregators__mixvpr__out_channels=64,
            aggregators__mixvpr__out_rows=3,
        ),
        train_set,
    ).model
    assert mix.descriptor_dim == 64 * 3
    with torch.no_grad():
        assert mix.eval()(torch.randn(2, 3, *TRAIN_SIZE)).shape == (2, 192)
    proj = build_training(train_config(model__descriptor_dim=32), train_set).model
    assert proj.eval()(torch.randn(2, 3, *TRAIN_SIZE)).shape == (2, 32)


def test_netvlad_kmeans_init_assigns_features_to_their_nearest_centroid(train_set):
    model = build_training(
        train_config(aggregator="netvlad", aggregators__netvlad__clusters=8), train_set
    ).model
    vlad = model.aggregator
    x = torch.nn.functional.normalize(
        vlad.centroids.detach()[:, :, None, None], dim=1
    )  # each centroid as a map
    assign = torch.softmax(vlad.assign(x).flatten(1), dim=1)
    assert (assign.argmax(1) == torch.arange(8)).all()


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_trains(name, train_set):
    training = two_steps(train_config(loss=name, miner="none"), train_set)
    if list(
        training.objective.loss.parameters()
    ):  # learnable centres: own group, own lr, in the checkpoint
        lrs = [g["lr"] for g in training.optimizer.param_groups]
        assert len(lrs) == 2 and lrs[1] == PARAMS["losses"][name]["weights_lr"]
        assert any(k.startswith("loss.") for k in training.objective.state_dict())


@pytest.mark.parametrize("name", MINERS.names())
def test_every_miner_trains(name, train_set):
    two_steps(
        train_config(miner=name, loss="triplet" if name != "pair_margin" else "contrastive"),
        train_set,
    )


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains(name, train_set):
    two_steps(train_config(optimizer=name), train_set)


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_trains_with_warmup(name, train_set):
    warmup = 0 if name == "onecycle" else 1
    two_steps(train_config(scheduler=name, train__warmup_steps=warmup), train_set)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_trains_and_makes_p_by_k_batches(name, train_set):
    training = two_steps(train_config(sampler=name), train_set)
    training.sampler.set_epoch(2)
    for batch in training.sampler:
        places = train_set.place_of_image[batch]
        assert len(batch) == 8 and len(set(batch)) == 8
        assert sorted(np.unique(places, return_counts=True)[1].tolist()) == [2, 2, 2, 2]


def test_hierarchical_batches_mix_two_cities(train_set):
    training = build_training(train_config(sampler="hierarchical"), train_set)
    for batch in training.sampler:
        cities = set(train_set.place_city[train_set.place_of_image[batch]].tolist())
        assert len(cities) == 2


def test_gpm_batches_group_places_with_similar_proxies(train_set):
    training = build_training(train_config(sampler="gpm", samplers__gpm__proxy_dim=2), train_set)
    sampler = training.sampler
    n = sampler.num_places
    angle = np.linspace(0, np.pi / 2, n)  # place p's proxy sits at angle[p] on a quarter circle
    proxies = torch.tensor(np.stack([np.cos(angle), np.sin(angle)], 1), dtype=torch.float32)
    sampler.record(torch.arange(n), proxies)
    sampler.set_epoch(5)
    spreads = [np.ptp(train_set.place_of_image[b]) for b in sampler]
    assert np.mean(spreads) < n / 3  # neighbours in proxy space = close place indices here


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_augmentation_keeps_shape_and_type(name):
    torch.manual_seed(0)
    (t,) = augmentations([{"name": name}], TRAIN_SIZE)
    img = torch.randint(0, 256, (3, *TRAIN_SIZE), dtype=torch.uint8)
    out = t(img)
    assert out.shape == img.shape and out.dtype == torch.uint8


@pytest.mark.parametrize("variant,lower_share", [("hard", 1.0), ("soft", 0.75), ("standard", 0.5)])
def test_random_erasing_variants_favour_the_lower_half(variant, lower_share):
    torch.manual_seed(0)
    (t,) = augmentations(
        [{"name": "random_erasing", "p": 1.0, "variant": variant, "scale": [0.01, 0.03]}], [64, 64]
    )
    lower = total = 0
    for _ in range(400):
        rows = (t(torch.full((3, 64, 64), 200, dtype=torch.uint8)) == 0).all(0).nonzero()[:, 0]
        lower += (rows >= 32).sum().item()
        total += len(rows)
    assert abs(lower / total - lower_share) < 0.06  # share of erased pixels in the lower half


def test_synthetic_night_darkens_and_brightness_scales():
    torch.manual_seed(0)
    img = torch.full((3, 48, 64), 150, dtype=torch.uint8)
    (night,) = augmentations([{"name": "synthetic_night", "p": 1.0, "lit_points": 0}], TRAIN_SIZE)
    assert night(img).float().mean() < 90
    (fixed,) = augmentations([{"name": "brightness", "min": 0.5, "max": 0.5, "p": 1.0}], TRAIN_SIZE)
    assert abs(fixed(img).float().mean().item() - 75) < 1


def test_pretrained_efficientnet_lite0_beats_the_untrained_one_without_training(tiny_city):
    from tests.helpers import eval_set
    from vpr.eval.validate import evaluate_model
    from vpr.models.network import build_model, model_spec

    test_set = eval_set(tiny_city / "test")
    r1 = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        cfg = train_config(
            backbone="efficientnet_lite0",
            aggregator="gem",
            backbones__efficientnet_lite0__pretrained=pretrained,
        )
        model = build_model(model_spec(cfg.raw, TRAIN_SIZE))
        r1[pretrained] = evaluate_model(model, test_set, TRAIN_SIZE)["R@1"]
    assert r1[True] >= r1[False] + 10, r1


def test_same_params_and_seed_give_identical_metrics(train_set, tiny_city, tmp_path):
    from tests.helpers import eval_set
    from vpr.eval.validate import evaluate_model
    from vpr.train.loop import LoopConfig, fit

    val = eval_set(tiny_city / "val")
    runs = []
    for i in range(2):
        cfg = train_config(
            augment=[{"name": "randaugment"}, {"name": "random_erasing", "variant": "soft"}],
            train__batches_per_epoch=3,
        )
        training = build_training(cfg, train_set)
        result = fit(
            training,
            LoopConfig(epochs=2, checkpoint_dir=str(tmp_path / str(i))),
            lambda m: evaluate_model(m, val, TRAIN_SIZE),
        )
        runs.append([{k: v for k, v in row.items() if k != "seconds"} for row in result.history])
    import json

    assert json.dumps(runs[0]) == json.dumps(runs[1])  # (NaN-safe: epoch 0 has no loss)
