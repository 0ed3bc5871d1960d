import numpy as np
import torch

from vpr.data.samplers import PlaceBatchSampler
from vpr.models.network import build_model
from vpr.train.losses import LOSSES, MINERS
from vpr.train.loop import LoopConfig, MetricObjective, fit
from vpr.train.optim import OPTIMIZERS
from tests.test_models import spec


def test_place_sampler_draws_k_distinct_images_from_p_places():
    sizes = [4, 6, 5, 9, 4, 7, 8, 4]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    images = np.arange(offsets[-1])
    place_of = np.repeat(np.arange(len(sizes)), sizes)
    sampler = PlaceBatchSampler(offsets, images, places_per_batch=3, images_per_place=4, seed=0,
                                batches_per_epoch=50)
    for batch in sampler:
        assert len(batch) == 12 and len(set(batch)) == 12          # no duplicate image in a batch
        places = place_of[batch].reshape(3, 4)
        assert (places == places[:, :1]).all() and len(set(places[:, 0])) == 3


def test_place_sampler_is_reproducible_per_epoch():
    offsets, images = np.arange(0, 41, 4), np.arange(40)
    a = PlaceBatchSampler(offsets, images, 4, 3, seed=1)
    b = PlaceBatchSampler(offsets, images, 4, 3, seed=1)
    a.set_epoch(3), b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model(spec())
    objective = MetricObjective(LOSSES.build("multisimilarity"), None)
    opt = OPTIMIZERS.build("adam", model.parameters(), settings=dict(lr=1e-3))
    images = torch.randn(16, 3, 64, 96)
    labels = torch.arange(4).repeat_interleave(4)
    losses = []
    for _ in range(6):
        loss = objective(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses


def test_fit_keeps_best_and_last_checkpoints_and_stops_early(tmp_path):
    torch.manual_seed(0)
    model = build_model(spec())
    objective = MetricObjective(LOSSES.build("contrastive"), MINERS.build("none"))
    opt = OPTIMIZERS.build("sgd", model.parameters(), settings=dict(lr=1e-3))
    batch = (torch.randn(8, 3, 64, 96), torch.arange(2).repeat_interleave(4))
    scores = iter([10.0, 20.0, 15.0, 14.0, 30.0])            # epoch 0, 1, 2, 3, (never reached)
    result = fit(model, objective, opt, None, lambda epoch: [batch], lambda m: {"R@1": next(scores)},
                 LoopConfig(epochs=4, checkpoint_dir=str(tmp_path), patience=2), checkpoint_meta=dict(spec=spec()))
    assert result.best_epoch == 1 and result.stopped_early and result.epochs_run == 3
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["epoch"] == 1 and last["epoch"] == 3 and best["metrics"] == {"R@1": 20.0}


def test_zero_epochs_only_evaluates_the_initial_model(tmp_path):
    model = build_model(spec())
    objective = MetricObjective(LOSSES.build("contrastive"), None)
    opt = OPTIMIZERS.build("sgd", model.parameters())
    result = fit(model, objective, opt, None, lambda e: [], lambda m: {"R@1": 5.0},
                 LoopConfig(epochs=0, checkpoint_dir=str(tmp_path)), checkpoint_meta=dict(spec=spec()))
    assert result.best_epoch == 0 and (tmp_path / "best.pt").exists()
