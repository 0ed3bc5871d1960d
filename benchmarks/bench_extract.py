"""Extraction: images per second of vpr.eval.extract.compute_descriptors (loader worker, decoding, transforms,
forward, copy out) divided by images per second of the bare forward pass on random batches of the same shape,
same model, same process, interleaved and repeated.

    python benchmarks/bench_extract.py [--quick] [--device cpu|cuda]
"""
from __future__ import annotations

import os
import time

from bench_train import TRAIN_CITY
from common import standalone, Figure, fmt_spread, shipped_params, spread, synthetic_city, upscaled_copy


def measure(city, device: str, reps: int, limit: int) -> dict:
    import torch

    from vpr.config import validate
    from vpr.eval.extract import compute_descriptors
    from vpr.models.network import build_model, model_spec

    cfg = validate(shipped_params())
    e = cfg.extract
    torch.manual_seed(0)
    model = build_model(model_spec(cfg.raw, cfg.train.image_size)).to(device).eval()
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

    pure()   # warm-up
    extract_rate, pure_rate = [], []
    for _ in range(reps):
        start = time.perf_counter()
        compute_descriptors(model, paths, e.image_size, e.batch_size, e.num_workers, device)
        extract_rate.append(len(paths) / (time.perf_counter() - start))
        start = time.perf_counter()
        pure()
        pure_rate.append(len(paths) / (time.perf_counter() - start))
    ratio = [x / p for x, p in zip(extract_rate, pure_rate)]
    return dict(ratio=spread(ratio), images=len(paths), extract_img_s=extract_rate, pure_img_s=pure_rate,
                batch=e.batch_size, workers=e.num_workers, image_size=list(e.image_size))


def run(quick: bool = False, device: str = "auto") -> list[Figure]:
    from vpr.device import resolve_device
    device = resolve_device(device, "--device")   # threads and device as the stages set them
    reps, limit = (2, 640) if quick else (5, 1280)
    city = synthetic_city("train_city", **TRAIN_CITY)
    figures = []
    for label, folder in (("", city), (", photos 4x the training size", upscaled_copy(city, "train_city_x4", 4))):
        m = measure(folder, device, reps, limit)
        r = m["ratio"]
        figures.append(Figure(
            f"extraction images/s / pure forward images/s{label}", f"{r['median']:.3f}", ">= 0.9", r["median"] >= 0.9,
            f"{device}, {m['images']} images, batch {m['batch']}, {m['workers']} worker; {fmt_spread(r)}; "
            f"{sorted(m['extract_img_s'])[len(m['extract_img_s']) // 2]:.0f} vs "
            f"{sorted(m['pure_img_s'])[len(m['pure_img_s']) // 2]:.0f} images/s", m))
    return figures


if __name__ == "__main__":
    standalone(__doc__, run)
