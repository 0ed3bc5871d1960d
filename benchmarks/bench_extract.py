"""Extraction: images per second of vpr.eval.extract.compute_descriptors (loader worker, decoding, transforms,
forward, copy out) divided by images per second of the bare forward pass on random batches of the same shape,
same model, same process, interleaved and repeated.

    python benchmarks/bench_extract.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import time

from bench_train import TRAIN_CITY
from common import (
    Figure,
    fmt_spread,
    mixed_shape_photos,
    shipped_params,
    spread,
    standalone,
    synthetic_city,
    upscaled_copy,
)


def measure(city, device: str, reps: int, limit: int) -> dict:
    import torch

    from vpr.config import validate
    from vpr.eval.extract import compute_descriptors
    from vpr.models.network import build_model, model_spec

    cfg = validate(shipped_params())
    e = cfg.extract
    torch.manual_seed(0)
    model = build_model(model_spec(cfg, cfg.train.image_size)).to(device).eval()
    paths = sorted(str(p) for p in (city / "train").rglob("*.jpg"))[:limit]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    batch = torch.randn(e.batch_size, 3, *e.image_size, device=device)

    @torch.no_grad()
    def pure():
        done = 0
        while done < len(paths):
            n = min(e.batch_size, len(paths) - done)
            model(batch[:n]).float().cpu()
            done += n
        sync()

    pure()  # warm-up
    extract_rate, pure_rate = [], []
    for _ in range(reps):
        start = time.perf_counter()
        compute_descriptors(model, paths, e.image_size, e.batch_size, e.num_workers, device)
        extract_rate.append(len(paths) / (time.perf_counter() - start))
        start = time.perf_counter()
        pure()
        pure_rate.append(len(paths) / (time.perf_counter() - start))
    ratio = [x / p for x, p in zip(extract_rate, pure_rate)]
    return dict(
        ratio=spread(ratio),
        images=len(paths),
        extract_img_s=extract_rate,
        pure_img_s=pure_rate,
        batch=e.batch_size,
        workers=e.num_workers,
        image_size=list(e.image_size),
    )


def measure_mixed(folder, device: str, reps: int) -> dict:
    """Real photos of mixed shapes through extraction as the real profile tests them (recipe real_photos at
    320 x 320, but ``keep_aspect``: batches formed per output size), against pure forward passes of random
    tensors in exactly those batch shapes; and how full the batches are."""
    import torch

    from vpr import recipes
    from vpr.config import validate
    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import ImagePrep, oriented_size, size_batches
    from vpr.models.network import build_model, model_spec

    cfg = validate(recipes.apply(shipped_params(), "real_photos"))
    e = cfg.extract
    prep = ImagePrep(tuple(e.image_size), "keep_aspect", e.resize_side)
    torch.manual_seed(0)
    model = build_model(model_spec(cfg, cfg.train.image_size)).to(device).eval()
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    batches = size_batches(paths, prep, e.batch_size)
    shapes = [prep.output(*oriented_size(paths[b[0]])) for b in batches]
    inputs = [torch.randn(len(b), 3, *shape, device=device) for b, shape in zip(batches, shapes)]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    @torch.no_grad()
    def pure():
        for x in inputs:
            model(x).float().cpu()
        sync()

    pure()  # warm-up
    extract_rate, pure_rate = [], []
    for _ in range(reps):
        start = time.perf_counter()
        compute_descriptors(model, paths, prep, e.batch_size, e.num_workers, device)
        extract_rate.append(len(paths) / (time.perf_counter() - start))
        start = time.perf_counter()
        pure()
        pure_rate.append(len(paths) / (time.perf_counter() - start))
    fill = len(paths) / (len(batches) * e.batch_size)
    return dict(
        ratio=spread([x / p for x, p in zip(extract_rate, pure_rate)]),
        images=len(paths),
        batches=len(batches),
        sizes=len(set(shapes)),
        batch=e.batch_size,
        mean_fill=fill,
        workers=e.num_workers,
        extract_img_s=extract_rate,
        pure_img_s=pure_rate,
    )


def run(quick: bool = False, device: str = "auto") -> list[Figure]:
    from vpr.device import resolve_device

    device = resolve_device(device, "--device")  # threads and device as the stages set them
    reps, limit = (2, 640) if quick else (5, 1280)
    city = synthetic_city("train_city", **TRAIN_CITY)
    figures = []
    for label, folder in (
        ("", city),
        (", photos 4x the training size", upscaled_copy(city, "train_city_x4", 4)),
    ):
        m = measure(folder, device, reps, limit)
        r = m["ratio"]
        figures.append(
            Figure(
                f"extraction images/s / pure forward images/s{label}",
                f"{r['median']:.3f}",
                ">= 0.9",
                r["median"] >= 0.9,
                f"{device}, {m['images']} images, batch {m['batch']}, {m['workers']} worker; {fmt_spread(r)}; "
                f"{sorted(m['extract_img_s'])[len(m['extract_img_s']) // 2]:.0f} vs "
                f"{sorted(m['pure_img_s'])[len(m['pure_img_s']) // 2]:.0f} images/s",
                m,
            )
        )
    folder = mixed_shape_photos(256 if quick else 512)
    if folder is None:
        figures.append(
            Figure(
                "extraction / pure forward, real photos of mixed shapes",
                "not measured",
                ">= 0.9",
                None,
                "no local copy of the Cambridge photos",
            )
        )
        return figures
    m = measure_mixed(folder, device, max(2, reps - 2))
    r = m["ratio"]
    figures.append(
        Figure(
            "extraction images/s / pure forward images/s, real photos of mixed shapes (real profile, 320, keep_aspect)",
            f"{r['median']:.3f}",
            ">= 0.9",
            r["median"] >= 0.9,
            f"{device}, {m['images']} Cambridge photos cropped to 8 shapes -> {m['sizes']} input sizes, {m['batches']} "
            f"batches of up to {m['batch']}: mean batch fill {m['mean_fill']:.2f}; {m['workers']} worker; "
            f"{fmt_spread(r)}",
            m,
        )
    )
    return figures


if __name__ == "__main__":
    standalone(__doc__, run)
