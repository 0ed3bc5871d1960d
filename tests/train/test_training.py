import numpy as np
import pytest
import torch

from tests.helpers import network_spec, one_batch_training, training_parts
from vpr.data.samplers import PlaceBatchSampler
from vpr.errors import TrainingError
from vpr.train.loop import LoopConfig, fit
from vpr.train.optim import SCHEDULERS


def test_place_sampler_draws_k_distinct_images_from_p_places():
    sizes = [4, 6, 5, 9, 4, 7, 8, 4]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    images = np.arange(offsets[-1])
    place_of = np.repeat(np.arange(len(sizes)), sizes)
    sampler = PlaceBatchSampler(
        offsets, images, places_per_batch=3, images_per_place=4, seed=0, batches_per_epoch=50
    )
    for batch in sampler:
        assert len(batch) == 12 and len(set(batch)) == 12  # no duplicate image in a batch
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
    model, objective, opt = training_parts()
    batch = {"images": torch.randn(16, 3, 64, 96), "labels": torch.arange(4).repeat_interleave(4)}
    losses = []
    for _ in range(6):
        loss, _ = objective(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses


def test_fit_keeps_best_and_last_checkpoints_and_stops_early(tmp_path):
    scores = iter([10.0, 20.0, 15.0, 14.0, 30.0])  # epoch 0, 1, 2, 3, (never reached)
    result = fit(
        one_batch_training(),
        LoopConfig(
            epochs=4, checkpoint_dir=str(tmp_path), patience=2, meta=dict(spec=network_spec())
        ),
        lambda m: {"R@1": next(scores)},
    )
    assert result.best_epoch == 1 and result.stopped_early and result.epochs_run == 3
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["epoch"] == 1 and last["epoch"] == 3 and best["metrics"] == {"R@1": 20.0}
    assert last["finished"] and not best["finished"]


def test_zero_epochs_only_evaluates_the_initial_model(tmp_path):
    result = fit(
        one_batch_training(steps=0),
        LoopConfig(epochs=0, checkpoint_dir=str(tmp_path)),
        lambda m: {"R@1": 5.0},
    )
    assert result.best_epoch == 0 and (tmp_path / "best.pt").exists()


class _NaNAfter(torch.nn.Module):
    """An objective that diverges at a given epoch."""

    def __init__(self, inner, epoch):
        super().__init__()
        self.inner, self.epoch, self.calls = inner, epoch, 0

    def forward(self, model, batch):
        self.calls += 1
        loss, logs = self.inner(model, batch)
        return (loss * float("nan") if self.calls >= self.epoch else loss), logs


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    diverging = one_batch_training(objective=lambda inner: _NaNAfter(inner, 2))
    with pytest.raises(
        TrainingError, match="loss became nan at epoch 2, step 1; the last good checkpoint"
    ):
        fit(diverging, LoopConfig(epochs=3, checkpoint_dir=str(tmp_path)), lambda m: {"R@1": 1.0})
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point()
    )


def test_resuming_from_last_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    def run(epochs, directory, resume=None):
        training = one_batch_training(
            "multisimilarity", 2, schedule=lambda opt: SCHEDULERS.build("cosine", opt, 3, 2, 1)
        )
        scores = iter(range(100))
        return fit(
            training,
            LoopConfig(epochs=epochs, checkpoint_dir=str(directory), seed=3),
            lambda m: {"R@1": float(next(scores))},
            resume=resume,
        ), training.model

    full, full_model = run(3, tmp_path / "a")
    run(1, tmp_path / "b")  # "killed" after epoch 1
    last = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    resumed, resumed_model = run(3, tmp_path / "b", resume=last)
    assert resumed.resumed_from == 2
    assert [r["train_loss"] for r in resumed.history[1:]] == [
        r["train_loss"] for r in full.history[1:]
    ]
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
