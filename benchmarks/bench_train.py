"""Training data path: time per step of the real training loop (vpr.train.loop.fit with the recipe's batches:
sampler, loader workers, decoding, augmentation, batching, device transfer) divided by the pure model time on
one fixed batch of random tensors of the same shape (forward + loss + backward), same model, same process.

Epochs of the real loop alternate with blocks of pure steps (fit's on_epoch_end), so a change of machine
load hits both; each epoch's step time is divided by the mean of the pure blocks just before and after it.
Epoch 1 also pays for starting the (persistent) workers; the figure is the median over the later epochs.

    python benchmarks/bench_train.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import tempfile
import time

from common import (
    Figure,
    cambridge_converted,
    fmt_spread,
    shipped_params,
    spread,
    standalone,
    synthetic_city,
    upscaled_copy,
)

TRAIN_CITY = dict(
    train_cities=1,
    places_per_city=400,
    val_blocks=2,
    test_blocks=2,
    val_queries=50,
    test_queries=50,
)


class PureSteps:
    """Blocks of pure optimizer steps on one fixed batch (no data loading), between the loop's epochs."""

    def __init__(self, training, batch: dict, steps: int, device: str, use_amp: bool):
        import torch

        self.t, self.batch, self.steps, self.use_amp = training, batch, steps, use_amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.fwd_bwd, self.step = [], []

    def block(self, _row=None) -> None:
        import torch

        r = self.t
        r.model.train()
        r.objective.train()
        fb = total = 0.0
        for _ in range(self.steps):
            self.sync()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
                loss, _ = r.objective(r.model, self.batch)
            r.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            loss.item()
            self.sync()
            t1 = time.perf_counter()
            self.scaler.step(r.optimizer)
            self.scaler.update()
            r.schedule.step()
            self.sync()
            fb += t1 - t0
            total += time.perf_counter() - t0
        self.fwd_bwd.append(fb / self.steps)
        self.step.append(total / self.steps)


def _train_set(folder, gt: dict):
    """The training places as build_gt makes them (the note field, or positions for gt.train_places)."""
    from vpr.data.layouts import build_train_index

    return build_train_index(str(folder), gt["train_min_images"], check="none", places=gt)[0]


def measure(
    city,
    device: str,
    steps: int,
    epochs: int,
    draft: bool = True,
    augment=None,
    recipe: str | None = None,
    **train,
) -> dict:
    import torch

    import vpr.data.loading as loading
    from vpr.config import validate
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.setup import build_training

    raw = shipped_params()
    if recipe:
        from vpr import recipes

        raw = recipes.apply(raw, recipe)
    raw["train"].update(dict(epochs=epochs, batches_per_epoch=steps, patience=0), **train)
    if augment:
        raw["augment"] = augment
    cfg = validate(raw)
    t = cfg.train
    original = loading.load_rgb
    if (
        not draft
    ):  # decode in full, then resize (what the data path did before); workers fork after this
        loading.load_rgb = lambda path, draft_size=None: original(path)
    try:
        r = build_training(cfg, _train_set(city / "train", cfg.raw["gt"]), device)
        batch_size = t.places_per_batch * t.images_per_place
        images = torch.randn(batch_size, 3, *t.image_size, device=device)
        if device == "cuda" and t.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        fixed = {
            "images": images,
            "labels": torch.arange(t.places_per_batch, device=device).repeat_interleave(
                t.images_per_place
            ),
        }
        pure = PureSteps(r, fixed, steps, device, t.amp and device == "cuda")

        with tempfile.TemporaryDirectory() as tmp:
            loop = LoopConfig(
                epochs=epochs,
                checkpoint_dir=tmp,
                patience=0,
                device=device,
                seed=cfg.seed,
                amp=t.amp,
            )
            result = fit(r, loop, lambda model: {"R@1": 0.0}, on_epoch_end=pure.block)
    finally:
        loading.load_rgb = original
    step = [row["seconds"] / steps for row in result.history[1:]]
    around = lambda values, e: (values[e] + values[e + 1]) / 2  # noqa: E731  pure blocks before / after epoch e+1
    ratio = [s / around(pure.fwd_bwd, e) for e, s in enumerate(step)]
    ratio_step = [s / around(pure.step, e) for e, s in enumerate(step)]
    return dict(
        step_s=step,
        pure_fwd_bwd_s=pure.fwd_bwd,
        pure_step_s=pure.step,
        ratio=ratio,
        ratio_with_optimizer=ratio_step,
        steady=spread(ratio[1:]),
        steady_with_optimizer=spread(ratio_step[1:]),
        first_epoch=ratio[0],
        batch=batch_size,
        image_size=list(t.image_size),
        workers=t.num_workers,
    )


def real_profile(device: str, steps: int, epochs: int) -> list[Figure]:
    """The real profile's training (recipe real_photos: 320 x 320 Cambridge street-view JPEGs trained at 160 x 160,
    P x K = 32 x 2, its augmentations), and with colour jitter + random resized crop for comparison."""
    cambridge = cambridge_converted()
    if cambridge is None:
        return [
            Figure(
                "train step / pure, real photos (real profile)",
                "not measured",
                "<= 1.15",
                None,
                "no local copy of the Cambridge photos",
            )
        ]
    steps = min(steps, 5)  # the profile's 188 places make 5 batches of 32 places
    figures = []
    from tune_real_photos import (
        AUGMENT as jitter,  # the augmentation the tuning tried (and did not keep)
    )

    for label, augment in (
        ("its augmentations (none)", None),
        ("colour jitter + random resized crop", jitter),
    ):
        gpu = (
            dict(num_workers=2, amp=True) if device == "cuda" else {}
        )  # the GPU check: 2 workers, AMP on
        m = measure(
            cambridge,
            device,
            steps,
            max(3, epochs - 2),
            recipe="real_photos",
            augment=augment,
            **gpu,
        )
        figures.append(
            Figure(
                f"train step / pure forward+backward, real photos (real profile, {label})",
                f"{m['steady']['median']:.3f}",
                "<= 1.15" if augment is None else "for comparison",
                m["steady"]["median"] <= 1.15 if augment is None else None,
                f"{device}, 320x320 Cambridge JPEGs trained at {m['image_size'][0]}x{m['image_size'][1]}, batch {m['batch']}, "
                f"{m['workers']} worker; {fmt_spread(m['steady'])}; step {statistics.median(m['step_s'][1:]):.3f} s vs pure "
                f"{statistics.median(m['pure_fwd_bwd_s']):.3f} s",
                m,
            )
        )
    return figures


def run(quick: bool = False, device: str = "auto") -> list[Figure]:
    from vpr.device import resolve_device

    device = resolve_device(device, "--device")  # threads and device as the stages set them
    steps, epochs = (6, 3) if quick else (12, 5)
    city = synthetic_city("train_city", **TRAIN_CITY)
    figures = []
    m = measure(city, device, steps, epochs)
    figures.append(
        Figure(
            "train step / pure forward+backward",
            f"{m['steady']['median']:.3f}",
            "<= 1.15",
            m["steady"]["median"] <= 1.15,
            f"{device}, default params (batch {m['batch']} at {m['image_size'][0]}x{m['image_size'][1]}, "
            f"{m['workers']} worker); {fmt_spread(m['steady'])}; step {statistics.median(m['step_s'][1:]):.3f} s vs pure "
            f"{statistics.median(m['pure_fwd_bwd_s']):.3f} s; with the optimizer step in the pure time: "
            f"{m['steady_with_optimizer']['median']:.3f}; epoch 1 (starting the workers): {m['first_epoch']:.3f}",
            m,
        )
    )
    big = upscaled_copy(city, "train_city_x4", 4)
    for draft in (True, False):
        m = measure(big, device, steps, max(3, epochs - 2), draft=draft)
        figures.append(
            Figure(
                f"train step / pure, photos 4x the training size ({'draft decoding' if draft else 'full decoding'})",
                f"{m['steady']['median']:.3f}",
                "<= 1.15" if draft else "for comparison",
                m["steady"]["median"] <= 1.15 if draft else None,
                f"384x512 JPEGs trained at 96x128; {fmt_spread(m['steady'])}",
                m,
            )
        )
    augment = [{"name": "randaugment", "num_ops": 3}, {"name": "brightness", "min": 0.3, "p": 0.3}]
    m = measure(city, device, steps, max(3, epochs - 2), augment=augment)
    figures.append(
        Figure(
            "train step / pure, with RandAugment(3) + brightness in the worker",
            f"{m['steady']['median']:.3f}",
            "for comparison",
            None,
            fmt_spread(m["steady"]),
            m,
        )
    )
    figures += real_profile(device, steps, epochs)
    if (
        device == "cuda"
    ):  # the GPU path: AMP, channels-last, augmentation on the GPU batch, 2 loader workers
        m = measure(
            big,
            device,
            steps,
            epochs,
            augment=augment,
            num_workers=2,
            augment_on="device",
            amp=True,
        )
        figures.append(
            Figure(
                "GPU train step / pure, 2 workers, augmentation on the GPU",
                f"{m['steady']['median']:.3f}",
                "<= 1.15",
                m["steady"]["median"] <= 1.15,
                fmt_spread(m["steady"]),
                m,
            )
        )
    return figures


if __name__ == "__main__":
    standalone(__doc__, run)
