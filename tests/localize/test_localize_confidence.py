"""The calibrated confidence of localize: the fit, its storage in checkpoints, abstention, older checkpoints."""

import json

import numpy as np
import pytest
import torch

from tests.helpers import LOCALIZE_SIZE, eval_set, small_checkpoint, small_spec, stored_eval_set
from vpr import localize as loc
from vpr.eval.confidence import (
    DEPTH,
    FEATURES,
    Calibration,
    fit_calibration,
    fit_logistic,
    flagging_threshold,
    match_features,
    without_own_place,
)
from vpr.models.checkpoint import load_checkpoint


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# --- the features and the fit ---


def test_margin_is_to_the_best_match_farther_than_the_radius_from_the_top1():
    sims = [[0.9, 0.85, 0.6, 0.5], [0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6]]
    pos = [
        [[0, 0], [10, 0], [100, 0], [5, 0]],
        [[0, 0], [10, 0], [0, 20], [5, 5]],  # all within 25 m: the last one stands in
        [[0, 0], [np.inf, np.inf], [0, 20], [5, 5]],
    ]  # another UTM zone: far
    f = match_features(np.array(sims), np.array(pos, dtype=float), 25.0)
    assert f.shape == (3, len(FEATURES))
    assert np.allclose(f[:, 0], 0.9) and np.allclose(f[:, 1], [0.3, 0.3, 0.1])


def test_the_ranking_without_the_querys_own_place_skips_its_positives():
    is_positive = np.array(
        [
            [True, False, True, False, False],
            [False, False, False, False, False],
            [True, True, True, True, True],  # nothing else: left out
            [True, True, False, True, False],
        ]
    )
    rows, cols = without_own_place(is_positive, depth=3)
    assert rows.tolist() == [0, 1, 3]
    assert cols.tolist() == [[1, 3], [0, 1], [2, 4]]  # as many as every row has (2 here), in order
    rows, cols = without_own_place(is_positive[:2], depth=2)
    assert cols.tolist() == [[1, 3], [0, 1]]


def _validation(rng, n=2000, elsewhere=1000):
    """Features of validation queries (right top-1 with a known rate) and of queries without their place."""
    s = rng.uniform(0.3, 1.0, n)
    margin = 0.5 * s + rng.normal(0, 0.05, n)
    # Given the similarity, a larger margin is *less* often right here: an unconstrained fit turns it down.
    correct = rng.random(n) < _sigmoid(12 * (s - 0.65) - 40 * (margin - 0.5 * s))
    s_out = rng.uniform(0.2, 0.7, elsewhere)
    return (
        np.stack([s, margin], 1),
        correct,
        np.stack([s_out, 0.5 * s_out + rng.normal(0, 0.05, elsewhere)], 1),
    )


def test_confidence_never_falls_when_similarity_or_margin_grows_and_stays_a_probability():
    x, correct, out = _validation(np.random.default_rng(0))
    cal = fit_calibration(x, correct, out, 25.0)
    assert min(cal.weights) >= 0
    grid = np.linspace(-2, 3, 101)
    for fixed in (0.0, 0.3, 0.9):
        along_s = cal.confidence(np.stack([grid, np.full_like(grid, fixed)], 1))
        along_m = cal.confidence(np.stack([np.full_like(grid, fixed), grid], 1))
        for c in (along_s, along_m):
            assert np.all(np.diff(c) >= 0) and np.all((c >= 0) & (c <= 1))
    assert np.all(np.isfinite(cal.confidence(np.array([[1e6, 1e6], [-1e6, -1e6]]))))


def test_fit_recovers_a_known_rate():
    rng = np.random.default_rng(1)
    s, margin = rng.uniform(0.2, 1.0, 4000), rng.uniform(0.0, 0.3, 4000)
    truth = _sigmoid(-7 + 10 * s)  # the margin says nothing here
    weights, bias = fit_logistic(np.stack([s, margin], 1), rng.random(s.size) < truth)
    grid = np.linspace(0.2, 1.0, 9)
    for m in (0.05, 0.15, 0.25):
        fitted = _sigmoid(bias + weights[0] * grid + weights[1] * m)
        assert np.max(np.abs(fitted - _sigmoid(-7 + 10 * grid))) < 0.06
    # The photos without their place only choose the direction: the confidence stays the rate of the others.
    out = np.stack([rng.uniform(0.2, 0.6, 2000), rng.uniform(0.0, 0.3, 2000)], 1)
    cal = fit_calibration(np.stack([s, margin], 1), rng.random(s.size) < truth, out, 25.0)
    for m in (0.05, 0.15, 0.25):
        fitted = cal.confidence(np.stack([grid, np.full_like(grid, m)], 1))
        assert np.max(np.abs(fitted - _sigmoid(-7 + 10 * grid))) < 0.06
    flat = fit_calibration(
        np.stack([s, margin], 1), rng.random(s.size) < 0.3, [], 25.0
    )  # nothing to learn
    assert (
        np.allclose(flat.confidence(np.stack([s, margin], 1)), 0.3, atol=0.04)
        and flat.threshold == 0.5
    )


def test_no_correct_top1_in_validation_still_gives_a_finite_low_confidence():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (50, 2))
    cal = fit_calibration(x, np.zeros(50, bool), rng.uniform(0, 1, (50, 2)), 25.0)
    conf = cal.confidence(x)
    assert np.all(np.isfinite(conf)) and conf.max() < 0.1


def test_threshold_flags_the_share_of_photos_whose_place_is_not_in_the_database():
    assert (
        flagging_threshold([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 0.9) == 1.0
    )  # 9 of 10 below
    assert flagging_threshold([0.5, 0.1, 0.3, 0.2], 0.5) == 0.3
    assert flagging_threshold([0.1, 0.3, 0.3, 0.4], 0.5) == 0.4  # a tie goes below, together
    assert flagging_threshold([0.1, 0.2], 1.0) > 0.2
    x, correct, out = _validation(np.random.default_rng(3), n=300, elsewhere=300)
    cal = fit_calibration(x, correct, out, 25.0)
    flagged = cal.confidence(out) < cal.threshold
    kept = cal.confidence(x) >= cal.threshold
    assert flagged.mean() >= 0.9 and cal.flag_share == 0.9
    assert cal.fitted_on == dict(
        queries=300,
        correct_top1=int(correct.sum()),
        kept=int(kept.sum()),
        kept_correct=int(correct[kept].sum()),
        without_own_place=300,
        flagged_without_own_place=int(flagged.sum()),
        mean_confidence=cal.fitted_on["mean_confidence"],
    )


# --- stored with the model ---


def test_validation_calibrates_on_the_same_top1_as_recall_at_1(tiny_city):
    from vpr.eval.validate import evaluate_model
    from vpr.models.network import build_model

    torch.manual_seed(0)
    model = build_model(small_spec()).eval()
    val = eval_set(tiny_city / "val")
    metrics = evaluate_model(model, val, LOCALIZE_SIZE, ns=(1, 5), calibrate_radius_m=25.0)
    assert set(metrics) == {"R@1", "R@5", "calibration"}
    assert set(evaluate_model(model, val, LOCALIZE_SIZE, ns=(1, 5))) == {
        "R@1",
        "R@5",
    }  # only when asked
    cal = Calibration.from_dict(metrics["calibration"])
    assert (
        cal.fitted_on["queries"] == val.num_queries and cal.radius_m == 25.0 and cal.depth == DEPTH
    )
    assert cal.fitted_on["correct_top1"] == round(metrics["R@1"] * val.num_queries / 100)
    assert cal.fitted_on["without_own_place"] == val.num_queries


def test_training_stores_each_checkpoints_calibration_as_plain_numbers_loaded_with_weights_only(
    tmp_path,
):
    from vpr.models.network import build_model
    from vpr.train.loop import LoopConfig, fit
    from vpr.train.losses import LOSSES
    from vpr.train.objectives import MetricObjective
    from vpr.train.optim import OPTIMIZERS
    from vpr.train.setup import Training

    torch.manual_seed(0)
    model = build_model(small_spec())
    objective = MetricObjective(LOSSES.build("contrastive", 4, model.descriptor_dim), None)
    training = Training(
        small_spec(),
        model,
        objective,
        OPTIMIZERS.build("adam", model.parameters(), settings={}),
        None,
        sampler=None,
        batches=lambda epoch: [],
    )
    cal = fit_calibration(
        np.array([[0.5, 0.1], [0.9, 0.3], [0.7, 0.2]]),
        np.array([False, True, True]),
        np.array([[0.4, 0.05], [0.6, 0.1]]),
        25.0,
    )
    fit(
        training,
        LoopConfig(epochs=0, checkpoint_dir=str(tmp_path), meta=dict(spec=small_spec())),
        lambda m: {"R@1": 40.0, "calibration": cal.to_dict()},
    )
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(tmp_path / name, map_location="cpu", weights_only=True)
        assert ckpt["metrics"] == {"R@1": 40.0}
        assert Calibration.from_dict(ckpt["calibration"]) == cal
    assert loc.load_model_for_localize(str(tmp_path / "best.pt"), "cpu").calibration == cal


# --- localize ---


def _cli(world, *args, capsys):
    code = loc.main(
        [
            *args,
            "--database",
            "city",
            "--gt-root",
            world["gt_root"],
            "--features-root",
            world["features_root"],
            "--device",
            "cpu",
            "--no-pictures",
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def world(tiny_city, tmp_path_factory):
    """Database 'city' (the test city) with stored descriptors; photos of it (its database images as taken
    again) and photos from elsewhere (the training cities); a model whose stored calibration keeps the former
    and flags the latter, and the same model saved without a calibration (an older checkpoint)."""
    root = tmp_path_factory.mktemp("confidence")
    old = small_checkpoint(root / "old.pt")
    model = loc.load_model_for_localize(old, "cpu")
    es = stored_eval_set(tiny_city / "test", root / "gt", root / "features", "city", model)
    here = [str(p) for p in es.database_paths[::7][:4]]
    elsewhere = sorted(str(p) for p in (tiny_city / "train").rglob("*.jpg"))[::25][:4]
    db = np.load(root / "features" / "city" / "database.npy")
    d, _ = loc.photo_descriptors(model, here + elsewhere, LOCALIZE_SIZE, "cpu")
    top1 = (d @ db.T).max(1)
    assert top1[:4].min() > top1[4:].max() + 1e-4, top1  # the miniature separates them
    middle = (top1[:4].min() + top1[4:].max()) / 2
    steep = 8 / (top1[:4].min() - top1[4:].max())  # confidence 0.98 / 0.02 at the two edges
    cal = Calibration((steep, 0.0), -steep * middle, 0.5, 25.0, fitted_on=dict(queries=8))
    new = small_checkpoint(root / "calibrated.pt", calibration=cal.to_dict())
    return dict(
        old=old,
        new=new,
        here=here,
        elsewhere=elsewhere,
        gt_root=str(root / "gt"),
        features_root=str(root / "features"),
        root=root,
    )


def test_photos_from_elsewhere_are_not_in_this_database_and_the_others_get_a_position(
    world, capsys
):
    code, out, err = _cli(
        world, *world["here"], *world["elsewhere"], "--model", world["new"], "--json", capsys=capsys
    )
    assert code == 0, err
    results = json.loads(out)
    assert [r["in_database"] for r in results] == [True] * 4 + [False] * 4
    conf = np.array([r["confidence"] for r in results])
    assert conf[:4].min() > 0.9 and conf[4:].max() < 0.1
    assert all(
        len(r["matches"]) == 5 and r["estimate"]["utm_zone"] for r in results
    )  # matches still listed
    assert "calibration" not in err


def test_text_says_not_in_this_database_with_the_confidence_instead_of_a_position(world, capsys):
    code, out, err = _cli(
        world, world["here"][0], world["elsewhere"][0], "--model", world["new"], capsys=capsys
    )
    assert code == 0, err
    first, second = out.split(world["elsewhere"][0])
    assert (
        "estimated position:" in first
        and "(confidence 0.9" in first
        and "not in this database" not in first
    )
    lines = [line for line in second.splitlines() if line.startswith(("not in", "estimated"))]
    assert len(lines) == 1 and lines[0].startswith("not in this database (confidence 0.0")
    assert "similarity" in second and "UTM east" in second  # the matches, as before


def test_an_older_checkpoint_localizes_as_before_and_says_once_that_it_has_no_calibration(
    world, capsys
):
    code, out, err = _cli(
        world,
        *world["here"][:2],
        *world["elsewhere"][:2],
        "--model",
        world["old"],
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    results = json.loads(out)
    assert all(
        r["confidence"] is None and r["in_database"] is None and r["estimate"]["lat"]
        for r in results
    )
    notes = [line for line in err.splitlines() if "calibration" in line]  # JSON: stdout stays JSON
    assert (
        len(notes) == 1
        and notes[0].startswith("calibration: none stored in")
        and world["old"] in notes[0]
    ), err
    code, out, err = _cli(world, *world["elsewhere"][:2], "--model", world["old"], capsys=capsys)
    assert (
        code == 0
        and out.count("\nestimated position:") == 2
        and "\nnot in this database" not in out
    )
    assert out.count("calibration: none stored in") == 1 and "calibration" not in err


def test_a_malformed_calibration_is_one_line_naming_the_checkpoint_and_key(world, capsys):
    bad = small_checkpoint(
        world["root"] / "bad.pt", calibration={"weights": [1.0, 2.0], "bias": "x"}
    )
    code, out, err = _cli(world, world["here"][0], "--model", bad, capsys=capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and bad in lines[0] and "'calibration'" in lines[0], err
    assert load_checkpoint(bad)["calibration"]["bias"] == "x"
