"""ROC curve, AUC, background rejection and the JSD estimate from a classifier's probabilities.

AUC and the curve come from scikit-learn (`roc_auc_score`, `roc_curve`: maintained and tested, ties counted
one half); the DeLong error of an AUC difference is written here because no maintained library has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted one half."""
    labels = np.asarray(labels).astype(bool).ravel()
    if labels.all() or not labels.any():
        raise ValueError("AUC needs both classes")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64).ravel()))


def auc_difference(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """AUC(first) - AUC(second) on the same samples and its standard error (DeLong, DeLong & Clarke-Pearson 1988).

    Two detectors scored on one test set share its sampling noise, so their AUCs are correlated; DeLong's
    per-sample components give the variance of the difference without resampling, which tells whether a
    gap such as the G2Net CNN's to the matched filter is resolved by the test set at all."""
    labels = np.asarray(labels).astype(bool).ravel()
    m, n = int(labels.sum()), int((~labels).sum())
    if m < 2 or n < 2:
        raise ValueError("the AUC difference's error needs at least two samples of each class")
    components = []
    for scores in (first, second):
        scores = np.asarray(scores, dtype=np.float64).ravel()
        pos, neg = scores[labels], scores[~labels]
        both = rankdata(np.concatenate([pos, neg]))
        per_pos = (both[:m] - rankdata(pos)) / n            # P(score > a random noise sample) of each signal
        per_neg = 1.0 - (both[m:] - rankdata(neg)) / m      # P(a random signal > score) of each noise sample
        components.append((per_pos, per_neg))
    auc = [float(p.mean()) for p, _ in components]
    cov_pos = np.cov(np.stack([p for p, _ in components]))
    cov_neg = np.cov(np.stack([q for _, q in components]))
    var = (cov_pos[0, 0] + cov_pos[1, 1] - 2 * cov_pos[0, 1]) / m + (cov_neg[0, 0] + cov_neg[1, 1] - 2 * cov_neg[0, 1]) / n
    return auc[0] - auc[1], float(np.sqrt(max(var, 0.0)))


@dataclass(frozen=True)
class RocCurve:
    """False- and true-positive rates at each distinct threshold, from (0, 0) to (1, 1)."""

    fpr: np.ndarray
    tpr: np.ndarray

    @classmethod
    def from_scores(cls, labels: np.ndarray, scores: np.ndarray) -> "RocCurve":
        labels = np.asarray(labels).astype(bool).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if labels.all() or not labels.any():
            raise ValueError("a ROC curve needs both classes")
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
        return cls(fpr, tpr)

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))

    def fpr_at_tpr(self, efficiency: float) -> float:
        """Background efficiency at the given signal efficiency (linear interpolation on the curve)."""
        return float(np.interp(efficiency, self.tpr, self.fpr))

    def downsample(self, n_points: int = 500) -> "RocCurve":
        """A light copy for plots and JSON."""
        if len(self.fpr) <= n_points:
            return self
        idx = np.unique(np.r_[np.linspace(0, len(self.fpr) - 1, n_points).astype(int), len(self.fpr) - 1])
        return RocCurve(self.fpr[idx], self.tpr[idx])


def background_rejection(labels: np.ndarray, scores: np.ndarray, signal_efficiency: float = 0.9) -> float:
    """1 / background efficiency at the signal efficiency; with no background left, 1 / (1 / n_background)
    (a lower bound: the test set cannot resolve more)."""
    curve = RocCurve.from_scores(labels, scores)
    n_bkg = int((~np.asarray(labels).astype(bool)).sum())
    return 1.0 / max(curve.fpr_at_tpr(signal_efficiency), 1.0 / max(n_bkg, 1))


def binary_cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean BCE with log clamped at -100, as torch's BCELoss does, so p = 0 or 1 stays finite."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_q = np.maximum(np.log1p(-p), -100.0)
    return float(-np.mean(y * log_p + (1 - y) * log_q))


def jsd_from_bce(bce: float) -> float:
    """Jensen-Shannon divergence in bits from an optimal classifier's BCE on balanced classes:
    JSD = (ln 2 - BCE) / ln 2 (0 = indistinguishable, 1 = fully separable)."""
    return float((np.log(2.0) - bce) / np.log(2.0))


@dataclass(frozen=True)
class PidScore:
    """What a particle-ID classifier achieves on labelled scores (signal = 1): one definition shared by the
    library function below and the Lightning module `detsim.models.pid.ParticleIdClassifier`."""

    auc: float
    signal_efficiency: float
    background_efficiency: float
    background_rejection: float  # 1 / background_efficiency (bounded by the test-set size)
    n_test: int
    roc: RocCurve = field(repr=False)

    @classmethod
    def from_scores(cls, labels: np.ndarray, scores: np.ndarray, signal_efficiency: float = 0.9) -> "PidScore":
        curve = RocCurve.from_scores(labels, scores)
        return cls(
            auc=roc_auc(labels, scores),
            signal_efficiency=signal_efficiency,
            background_efficiency=curve.fpr_at_tpr(signal_efficiency),
            background_rejection=background_rejection(labels, scores, signal_efficiency),
            n_test=len(labels),
            roc=curve.downsample(),
        )

    @property
    def efficiency_pct(self) -> int:
        """The signal efficiency in percent, as metric names carry it (`..._at_90`)."""
        return int(round(100 * self.signal_efficiency))

