"""Does ``python -m vpr.localize`` say when a photo is from somewhere else? (issue 22, point 5)

Each model's calibration (stored in its checkpoint, fitted on its validation queries: vpr.eval.confidence)
decides per photo, through vpr.localize.localize itself. Four runs, both ways:

- synthetic model, synthetic test database: its test queries (in the database): how many correct top-1 are
  kept, how many wrong ones are flagged;
- synthetic model, synthetic test database: real Cambridge photos (the Cambridge test queries): share flagged;
- Cambridge model, Cambridge test database: its test queries (in the database);
- Cambridge model, Cambridge test database: the synthetic test queries: share flagged.

The synthetic model and sets are the default pipeline's (``dvc repro`` here); the Cambridge ones come from a
copy of the project (``git clone . /tmp/loc-cam``) whose params.yaml has ``data`` = ``data_profiles.cambridge``,
``datasets.cambridge_sv`` source ``path`` (the shared copy of the photos), ``gt.train_places: clusters``,
``gt.train_min_images: 2``, ``train.images_per_place: 2``, ``train.epochs: 2``, ``train.image_size: [160, 160]``,
``extract.image_size: [320, 320]``, ``extract.resize: stretch``, after ``dvc repro evaluate@cambridge_test``:

    python benchmarks/bench_localize_ood.py --cambridge-project /tmp/loc-cam [--synth-project .]

Prints the figures and writes them to benchmarks/results/localize_ood.json. Not part of run.py: it needs
the two trained projects.
"""

from __future__ import annotations

import os

import numpy as np
from common import ROOT, Figure, machine, save_json

RESULT = ROOT / "benchmarks" / "results" / "localize_ood.json"


def project(folder: str, test_set: str) -> dict:
    """A trained project: its best model, one of its evaluation sets (ground truth, stored descriptors)."""
    folder = os.path.abspath(folder)
    return dict(
        model=os.path.join(folder, "models", "best.pt"),
        gt_root=os.path.join(folder, "data", "gt"),
        features_root=os.path.join(folder, "data", "features"),
        set=test_set,
        root=folder,
    )


def queries(proj: dict) -> list[str]:
    """The test queries of a project (their paths, relative to the project, made absolute)."""
    from vpr.data.groundtruth import load_eval_set

    es = load_eval_set(os.path.join(proj["gt_root"], proj["set"]))
    return [os.path.join(proj["root"], str(p)) for p in es.queries_paths]


def run_localize(proj: dict, photos) -> tuple[list[dict], dict]:
    """localize's results for ``photos`` against the project's test set, and the model's calibration."""
    from vpr.localize import load_model_for_localize, localize, open_database

    model = load_model_for_localize(proj["model"], "cpu")
    if model.calibration is None:
        raise SystemExit(f"{proj['model']} stores no calibration: retrain it with this version")
    db = open_database(proj["set"], proj["gt_root"], proj["features_root"])
    results = localize(
        list(photos), model, proj["model"], db, top_k=5, device="cpu", log=lambda m: None
    )
    return results, model.calibration.to_dict()


def in_database(proj: dict) -> tuple[dict, dict]:
    """The project's test queries against its test database: top-1 correct (ground truth) vs kept."""
    from vpr.data.groundtruth import load_eval_set

    es = load_eval_set(os.path.join(proj["gt_root"], proj["set"]))
    results, cal = run_localize(proj, queries(proj))
    row = {str(p): i for i, p in enumerate(es.database_paths)}
    top1 = np.array([row[r["matches"][0]["image"]] for r in results])
    correct = np.array(
        [
            top1[q] in es.positives.indices[es.positives.offsets[q] : es.positives.offsets[q + 1]]
            for q in range(len(results))
        ]
    )
    kept = np.array([r["in_database"] for r in results])
    conf = np.array([r["confidence"] for r in results])
    sims = np.array([r["matches"][0]["similarity"] for r in results])
    return dict(
        queries=len(results),
        correct_top1=int(correct.sum()),
        kept=int(kept.sum()),
        correct_kept=int((correct & kept).sum()),
        wrong_flagged=int((~correct & ~kept).sum()),
        precision_kept=_share(correct[kept].sum(), kept.sum()),
        mean_confidence=round(float(conf.mean()), 3),
        top1_similarity_correct=_range(sims[correct]),
        top1_similarity_wrong=_range(sims[~correct]),
        confidence_correct=_range(conf[correct]),
        confidence_wrong=_range(conf[~correct]),
    ), cal


def elsewhere(proj: dict, photos) -> dict:
    """Photos of another city against the project's test database: how many are flagged."""
    results, _ = run_localize(proj, photos)
    kept = np.array([r["in_database"] for r in results])
    conf = np.array([r["confidence"] for r in results])
    sims = np.array([r["matches"][0]["similarity"] for r in results])
    return dict(
        photos=len(results),
        flagged=int((~kept).sum()),
        weighted_estimates_kept=int(
            sum(r["in_database"] and r["estimate"]["method"] != "top-1" for r in results)
        ),
        top1_similarity=_range(sims),
        confidence=_range(conf),
    )


def _share(a, b):
    return round(float(a) / float(b), 4) if b else None


def _range(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return {}
    return dict(
        min=round(float(x.min()), 3),
        median=round(float(np.median(x)), 3),
        max=round(float(x.max()), 3),
    )


def figures(name: str, inside: dict, outside: dict, cal: dict) -> list[Figure]:
    i, o = inside, outside
    return [
        Figure(
            f"{name}: correct top-1 kept",
            f"{i['correct_kept']}/{i['correct_top1']} "
            f"({100 * _share(i['correct_kept'], i['correct_top1']):.1f} %)",
            "in-database test queries",
            None,
            f"{i['queries']} queries, R@1 {100 * i['correct_top1'] / i['queries']:.1f} %, mean confidence "
            f"{i['mean_confidence']:.3f}; kept {i['kept']}, "
            f"precision of kept {100 * (i['precision_kept'] or 0):.1f} %; threshold {cal['threshold']:.3f}, "
            f"flagging {cal['fitted_on']['flagged_without_own_place']:.0f}/"
            f"{cal['fitted_on']['without_own_place']:.0f} validation queries without their place",
        ),
        Figure(
            f"{name}: wrong top-1 flagged",
            f"{i['wrong_flagged']}/{i['queries'] - i['correct_top1']} "
            f"({100 * _share(i['wrong_flagged'], i['queries'] - i['correct_top1']):.1f} %)",
            "in-database test queries",
            None,
            f"top-1 similarity correct {_fmt(i['top1_similarity_correct'])}, wrong "
            f"{_fmt(i['top1_similarity_wrong'])}",
        ),
        Figure(
            f"{name}: photos of another city flagged",
            f"{o['flagged']}/{o['photos']} ({100 * _share(o['flagged'], o['photos']):.1f} %)",
            "out-of-database photos",
            None,
            f"top-1 similarity {_fmt(o['top1_similarity'])}, confidence {_fmt(o['confidence'])}; "
            f"kept with a weighted estimate: {o['weighted_estimates_kept']}",
        ),
    ]


def _fmt(r: dict) -> str:
    return f"{r['min']:.2f}-{r['max']:.2f} (median {r['median']:.2f})" if r else "none"


def run(
    cambridge_project: str = "/tmp/loc-cam",
    synth_project: str = str(ROOT),
    synth_set: str = "synth_test",
    cambridge_set: str = "cambridge_test",
) -> list[Figure]:
    import torch

    synth, cam = project(synth_project, synth_set), project(cambridge_project, cambridge_set)
    a_in, a_cal = in_database(synth)
    a_out = elsewhere(synth, queries(cam))
    b_in, b_cal = in_database(cam)
    b_out = elsewhere(cam, queries(synth))
    out = figures("(a) synthetic model + database, Cambridge photos", a_in, a_out, a_cal) + figures(
        "(b) Cambridge model + database, synthetic photos", b_in, b_out, b_cal
    )
    save_json(
        RESULT,
        dict(
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
            machine=machine(),
            a=dict(
                model=os.path.relpath(synth["model"], ROOT),
                database=synth_set,
                in_database=a_in,
                other_city="Cambridge test queries",
                out_of_database=a_out,
                calibration=a_cal,
            ),
            b=dict(
                model="models/best.pt of the cambridge data profile",
                database=cambridge_set,
                in_database=b_in,
                other_city="synthetic test queries",
                out_of_database=b_out,
                calibration=b_cal,
            ),
            figures=[f.line() for f in out],
        ),
    )
    return out


if __name__ == "__main__":
    from common import standalone

    standalone(__doc__, run)
    print(f"written: {os.path.relpath(RESULT, ROOT)}")
