"""Time per training epoch of each training method at the budget the README compares them with: the places
method (the default: one pass over the places, 16 x 4 images a batch), CosPlace (150 and 220 batches of 32)
and triplet mining (400 queries with its mining cache), on the embedded city's training set (shipped
synthetic params, plus the mining city triplet mining needs), CPU, validation left out (the same for all).
The epochs run in turns, repeated; the figure is each method's median epoch time over the places method's.

    python benchmarks/bench_methods.py [--quick]
"""

from __future__ import annotations

import statistics
import tempfile

from common import Figure, fmt_spread, shipped_params, spread, synthetic_city

METHODS = {  # name -> train / methods overrides of the shipped params
    "places": {},
    "cosplace, 150 batches of 32": {"train": {"method": "cosplace", "batches_per_epoch": 150}},
    "cosplace, 220 batches of 32": {"train": {"method": "cosplace", "batches_per_epoch": 220}},
    "triplet mining, 400 queries": {"train": {"method": "triplet_mining"}},
}


def _training_data(city):
    from vpr.data.groundtruth import TrainingData, build_train_set
    from vpr.data.layouts import build_eval_index

    return TrainingData(
        build_train_set(city / "train"), mining=build_eval_index(str(city / "mining"))[0]
    )


def epoch_seconds(data, overrides: dict) -> tuple[float, int]:
    """Seconds of one training epoch (no validation) and its number of steps, from the shipped params."""
    from vpr.config import validate
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.setup import build_training

    raw = shipped_params()
    raw["train"].update(dict(epochs=1, patience=0), **overrides.get("train", {}))
    cfg = validate(raw)
    training = build_training(cfg, data, "cpu")
    steps, batches = [], training.batches

    def counted(epoch):
        for batch in batches(epoch):
            steps.append(1)
            yield batch

    training.batches = counted
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(
            training,
            LoopConfig(epochs=1, checkpoint_dir=tmp, patience=0, device="cpu", seed=cfg.seed),
            lambda model: {"R@1": 0.0},
        )
    return result.history[-1]["seconds"], len(steps)


def run(quick: bool = False) -> list[Figure]:
    synth = dict(
        shipped_params()["synthetic"], extra_sets=["mining"], val_queries=20, test_queries=20
    )
    data = _training_data(synthetic_city("methods_city", **synth))
    seconds = {name: [] for name in METHODS}
    steps = {}
    for _ in range(1 if quick else 2):
        for name, overrides in METHODS.items():
            s, steps[name] = epoch_seconds(data, overrides)
            seconds[name].append(s)
    places = statistics.median(seconds["places"])
    figures = []
    for name in list(METHODS)[1:]:
        ratio = spread(s / p for s, p in zip(seconds[name], seconds["places"]))
        figures.append(
            Figure(
                f"epoch time / places method's epoch time: {name}",
                f"{ratio['median']:.2f}",
                "reported",
                None,
                f"{statistics.median(seconds[name]):.1f} s ({steps[name]} steps) vs {places:.1f} s "
                f"({steps['places']} steps of 16 x 4); {fmt_spread(ratio)}",
                seconds,
            )
        )
    return figures


if __name__ == "__main__":
    from common import standalone

    standalone(__doc__, run)
