"""A calibrated confidence that a retrieval's top-1 is right (within the ground-truth radius), and abstention.

Two cheap features of a query's ranked top-``DEPTH`` matches (:func:`match_features`):

* ``top1_similarity``: the cosine similarity of the top-1;
* ``margin``: the top-1's similarity minus that of the best match lying farther than the radius from the
  top-1 (a different place). A photo of a place in the database usually brings several views of that place
  first, ahead of the rest; a photo from elsewhere matches scattered places about equally well. When all
  ``DEPTH`` matches lie within the radius, the ``DEPTH``-th similarity stands in (a lower bound of the margin).

Fitted on the validation queries when training saves a checkpoint (:func:`fit_calibration`), in two steps:

1. *which combination* of the features tells a right top-1 from a wrong one: a logistic regression over the
   validation queries against the full validation database, plus the same queries against the database with
   their own place taken out (every image within the radius): photos of a place that is not in the database,
   whose top-1 is wrong by construction. Without them the fit cannot see what a photo from elsewhere looks
   like: on validation alone the similarity may add little to the margin, yet it is what sets photos of
   another city apart (their best match is far less similar);
2. *how likely* that combination is right: Platt scaling (a 1-D logistic regression) on the validation
   queries of the full database only, so the confidence is calibrated for photos of places in the database.

Logistic fits, not isotonic or binned calibration: a few hundred points (often tens of wrong top-1) give two
or three parameters well, not dozens of bins; scipy's L-BFGS-B does it (no scikit-learn needed). Platt's
smoothed targets ((n+ + 1) / (n+ + 2) and 1 / (n- + 2)) keep a fit finite when validation has no (or only)
right top-1, and every weight is bounded at >= 0: the confidence never falls when the similarity or the margin
grows.

Abstention: the threshold is the confidence that flags ``FLAG_SHARE`` (90 %) of those validation photos whose
place was taken out of the database: the rule is about photos from elsewhere, which is what "not in this
database" says, and a photo of another city is further from the database than a neighbouring street of the
same one (the simulation errs on the cautious side). What the threshold keeps of the photos that are in the
database is recorded (``fitted_on``: kept, kept_correct), not chosen. The result is plain numbers
(:meth:`Calibration.to_dict`), stored in the checkpoint (``weights_only`` loads).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vpr.errors import DataError

FEATURES = ("top1_similarity", "margin")
DEPTH = 20  # matches the features look at (localize retrieves at least this many)
FLAG_SHARE = 0.9  # of the validation photos whose place is not in the database


def match_features(similarity: np.ndarray, positions: np.ndarray, radius_m: float) -> np.ndarray:
    """(n, 2) features of ranked matches: ``similarity`` (n, k), best first; ``positions`` (n, k, 2) UTM
    east/north of the matches (inf: not comparable with the top-1, e.g. another UTM zone: counts as far)."""
    sim = np.asarray(similarity, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[1] == 0 or pos.shape != sim.shape + (2,):
        raise ValueError(
            f"similarity (n, k) with k >= 1 and positions (n, k, 2) expected, got {sim.shape}, "
            f"{pos.shape}"
        )
    with np.errstate(invalid="ignore"):
        far = ~(np.linalg.norm(pos - pos[:, :1], axis=2) <= radius_m)  # NaN/inf distances: far
    best_far = np.where(far, sim, -np.inf).max(1)
    best_far = np.where(np.isfinite(best_far), best_far, sim[:, -1])
    return np.stack([sim[:, 0], sim[:, 0] - best_far], axis=1)


def without_own_place(is_positive: np.ndarray, depth: int = DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """The ranking each query would get from the database without its own place: ``is_positive`` (n, k) marks
    the ranked matches within the radius of the query. Returns (rows, columns): the queries with at least
    one other match, and for each the columns of its first non-positive matches (as many as every row has,
    up to ``depth``), in rank order."""
    is_positive = np.asarray(is_positive, dtype=bool)
    others = (~is_positive).sum(1)
    rows = np.nonzero(others > 0)[0]
    if not len(rows):
        return rows, np.zeros((0, 0), np.int64)
    cols = np.argsort(is_positive[rows], axis=1, kind="stable")[
        :, : min(depth, int(others[rows].min()))
    ]
    return rows, cols


@dataclass(frozen=True)
class Calibration:
    """P(top-1 correct) = sigmoid(bias + weights . features); keep the top-1 when it is >= ``threshold``."""

    weights: tuple
    bias: float
    threshold: float
    radius_m: float
    depth: int = DEPTH
    features: tuple = FEATURES
    flag_share: float = FLAG_SHARE
    fitted_on: dict | None = (
        None  # what the fit saw: queries, correct top-1, kept at the threshold, ...
    )

    def confidence(self, features: np.ndarray) -> np.ndarray:
        z = self.bias + np.asarray(features, dtype=np.float64) @ np.asarray(
            self.weights, dtype=np.float64
        )
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def to_dict(self) -> dict:
        """Plain numbers, lists and strings only: a checkpoint holding it loads with ``weights_only=True``."""
        d = asdict(self)
        d.update(
            weights=[float(w) for w in self.weights],
            features=[str(f) for f in self.features],
            bias=float(self.bias),
            threshold=float(self.threshold),
            radius_m=float(self.radius_m),
            depth=int(self.depth),
            flag_share=float(self.flag_share),
            fitted_on=None
            if self.fitted_on is None
            else {
                str(k): v if isinstance(v, (str, bool)) else float(v)
                for k, v in self.fitted_on.items()
            },
        )
        return d

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "checkpoint") -> Calibration | None:
        """None for None (a checkpoint saved before calibrations); DataError naming the key if malformed."""
        if d is None:
            return None
        try:
            cal = cls(
                weights=tuple(float(w) for w in d["weights"]),
                bias=float(d["bias"]),
                threshold=float(d["threshold"]),
                radius_m=float(d["radius_m"]),
                depth=int(d["depth"]),
                features=tuple(d["features"]),
                flag_share=float(d.get("flag_share", FLAG_SHARE)),
                fitted_on=d.get("fitted_on"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{source}: 'calibration' is malformed ({type(exc).__name__}: {exc}); retrain the "
                f"model, or delete the 'calibration' entry to localize without confidences"
            ) from None
        if cal.features != FEATURES or len(cal.weights) != len(FEATURES):
            raise DataError(
                f"{source}: 'calibration' uses features {list(cal.features)}, this version computes "
                f"{list(FEATURES)}; retrain the model or use the version that trained it"
            )
        return cal


def fit_logistic(x: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights, bias) of P(correct) = sigmoid(bias + x . weights), weights >= 0, fitted to Platt's smoothed
    targets by L-BFGS-B on standardised features (returned in the original units)."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    z = (x - mean) / std

    def loss(theta):
        logit = theta[0] + z @ theta[1:]
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))
        value = np.sum(np.logaddexp(0.0, logit) - target * logit)
        residual = p - target
        return value, np.concatenate([[residual.sum()], z.T @ residual])

    start = np.zeros(1 + x.shape[1])
    start[0] = np.log(target.mean() / (1 - target.mean()))
    res = minimize(
        loss, start, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0.0, None)] * x.shape[1]
    )
    weights = res.x[1:] / std
    return weights, float(res.x[0] - weights @ mean)


def flagging_threshold(conf_elsewhere: np.ndarray, share: float) -> float:
    """The lowest confidence t such that at least ``share`` of ``conf_elsewhere`` lie below it."""
    c = np.sort(np.asarray(conf_elsewhere, dtype=np.float64))
    at = int(np.ceil(share * len(c) - 1e-9))
    if at >= len(c):
        return float(np.nextafter(c[-1], np.inf))
    while (
        0 < at < len(c) and c[at] == c[at - 1]
    ):  # ties: all of them on one side, flagged if need be
        at += 1
    return float(c[at]) if at < len(c) else float(np.nextafter(c[-1], np.inf))


def fit_calibration(
    features: np.ndarray,
    correct: np.ndarray,
    features_elsewhere: np.ndarray,
    radius_m: float,
    flag_share: float = FLAG_SHARE,
) -> Calibration:
    """The calibration of :func:`match_features` rows of validation queries (``correct``: was the top-1
    right) and of the same queries against the database without their place (``features_elsewhere``; none:
    the direction comes from the queries alone and the threshold is 0.5)."""
    correct = np.asarray(correct, dtype=bool)
    features, elsewhere = (
        np.asarray(features, np.float64),
        np.asarray(features_elsewhere, np.float64),
    )
    if len(correct) == 0:
        raise ValueError("no queries to calibrate on")
    elsewhere = elsewhere.reshape(-1, features.shape[1])
    direction, _ = fit_logistic(
        np.concatenate([features, elsewhere]), np.r_[correct, np.zeros(len(elsewhere), bool)]
    )
    scale, bias = fit_logistic((features @ direction)[:, None], correct)
    probe = Calibration(tuple(float(w) for w in direction * scale[0]), bias, 1.0, float(radius_m))
    conf = probe.confidence(features)
    threshold = (
        flagging_threshold(probe.confidence(elsewhere), flag_share) if len(elsewhere) else 0.5
    )
    kept = conf >= threshold
    fitted_on = dict(
        queries=int(len(correct)),
        correct_top1=int(correct.sum()),
        kept=int(kept.sum()),
        kept_correct=int((kept & correct).sum()),
        mean_confidence=round(float(conf.mean()), 4),
        without_own_place=int(len(elsewhere)),
        flagged_without_own_place=int((probe.confidence(elsewhere) < threshold).sum()),
    )
    return Calibration(
        probe.weights,
        bias,
        threshold,
        float(radius_m),
        DEPTH,
        FEATURES,
        float(flag_share),
        fitted_on,
    )
