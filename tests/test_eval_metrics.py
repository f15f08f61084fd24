"""Separation power, AUC/ROC, isotonic calibration and JSD against values known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from detsim.metrics.isotonic import IsotonicCalibrator
from detsim.metrics.roc import (RocCurve, auc_difference, background_rejection, binary_cross_entropy, jsd_from_bce,
                             roc_auc)
from detsim.metrics.separation import Binning, compare_features, reference_binning, separation_power


def test_separation_power_limits():
    assert separation_power([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert separation_power([5, 0, 0], [0, 0, 7]) == pytest.approx(1.0)
    # 0.5 * (0.25^2 / 0.75 + 0.25^2 / 1.25) = 1/15
    assert separation_power([1, 1], [1, 3]) == pytest.approx(1 / 15)


def test_reference_binning_folds_out_of_range_entries():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    b = reference_binning(ref, 20)
    assert b.lo == pytest.approx(ref.min()) and b.hi == pytest.approx(ref.max())
    counts = b.counts(np.array([-100.0, 100.0, np.inf, np.nan]))
    assert counts[0] == 1 and counts[-1] == 2 and counts.sum() == 3
    # a sample shifted entirely out of range is maximally different, not empty
    comp = compare_features({"a": ref}, {"a": ref + 100}, 20)["a"]
    assert comp.separation_power > 0.9


def test_log_binning_and_constant_reference():
    b = reference_binning(np.array([1.0, 10.0, 100.0, 0.0]), 2, log=True)
    assert b.log and b.edges == pytest.approx([1.0, 10.0, 100.0])
    assert b.counts(np.array([0.0, 5.0, 50.0])).tolist() == [2.0, 1.0]  # zero folds into the first bin
    c = reference_binning(np.full(10, 3.0), 4)
    assert c.lo < 3.0 < c.hi
    assert Binning(0, 1, 4).counts(np.array([0.1, 0.1])).tolist() == [2, 0, 0, 0]


def test_auc_matches_pairwise_count_and_roc_area():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.4
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(y, s) == pytest.approx(pairwise)
    assert RocCurve.from_scores(y, s).auc == pytest.approx(pairwise)


def _two_detectors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated detectors: a shared score plus each its own noise, the second one weaker."""
    y = rng.random(n) < 0.5
    shared = rng.normal(size=n) + 1.2 * y
    return y, shared + 0.5 * rng.normal(size=n), shared + 1.0 * rng.normal(size=n)


def test_auc_difference_error_matches_the_spread_over_test_sets():
    """DeLong's standard error of AUC(a) - AUC(b) equals the scatter of that difference over independent test sets."""
    rng = np.random.default_rng(4)
    y, a, b = _two_detectors(rng, 500)
    diff, se = auc_difference(y, a, b)
    assert diff == pytest.approx(roc_auc(y, a) - roc_auc(y, b))
    assert auc_difference(y, a, a) == (0.0, 0.0)
    draws = [auc_difference(*_two_detectors(rng, 500)) for _ in range(400)]
    spread = np.std([d for d, _ in draws])
    assert np.mean([e for _, e in draws]) == pytest.approx(spread, rel=0.15)
    flat = np.zeros_like(a)                     # AUC 0.5 without variance: the difference's error is one AUC's own
    unpaired = np.hypot(auc_difference(y, a, flat)[1], auc_difference(y, b, flat)[1])
    assert 0 < se < 0.8 * unpaired              # the shared test set's noise cancels in the difference
    with pytest.raises(ValueError, match="two samples of each class"):
        auc_difference(np.array([1, 0, 0]), a[:3], b[:3])


def test_background_rejection_at_signal_efficiency():
    # scores 0..99 signal above 50..149 background: TPR 0.9 reached at threshold 10 -> FPR 0
    labels = np.r_[np.ones(100), np.zeros(100)]
    scores = np.r_[np.arange(100) + 100.0, np.arange(100) + 50.0]
    curve = RocCurve.from_scores(labels, scores)
    assert curve.fpr_at_tpr(0.9) == pytest.approx(0.4, abs=0.02)
    assert background_rejection(labels, scores, 0.9) == pytest.approx(1 / curve.fpr_at_tpr(0.9))


def test_isotonic_calibration_is_monotone_and_tracks_the_true_probability():
    """Labels drawn with P(1 | s) = s**2: the calibrated map must follow s**2, not the raw score."""
    rng = np.random.default_rng(5)
    scores = rng.random(20000)
    labels = (rng.random(20000) < scores**2).astype(float)
    cal = IsotonicCalibrator.fit(scores, labels)
    grid = np.array([0.2, 0.5, 0.8])
    assert cal.predict(grid) == pytest.approx(grid**2, abs=0.05)
    assert np.all(np.diff(cal.predict(np.linspace(0, 1, 101))) >= 0)


def test_isotonic_calibration_agrees_with_scikit_learn_when_present():
    rng = np.random.default_rng(2)
    scores = rng.random(2000)
    labels = (rng.random(2000) < scores**2).astype(float)
    cal = IsotonicCalibrator.fit(scores, labels)
    grid = np.linspace(-0.1, 1.1, 301)
    pred = cal.predict(grid)
    assert np.all(np.diff(pred) >= -1e-12) and pred.min() > 0 and pred.max() < 1
    isotonic = pytest.importorskip("sklearn.isotonic")
    ref = isotonic.IsotonicRegression(out_of_bounds="clip").fit(scores, labels)
    assert pred == pytest.approx(np.clip(ref.predict(grid), 1 / 2001, 2000 / 2001), abs=1e-9)


def test_jsd_limits():
    y = np.r_[np.zeros(50), np.ones(50)]
    assert jsd_from_bce(binary_cross_entropy(y, np.full(100, 0.5))) == pytest.approx(0.0, abs=1e-12)
    assert jsd_from_bce(binary_cross_entropy(y, y)) == pytest.approx(1.0)
