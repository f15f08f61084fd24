"""Isotonic calibration of classifier outputs (pool-adjacent-violators), without scikit-learn.

A classifier trained to tell two samples apart is rarely calibrated; the JSD estimate from its
binary cross-entropy needs calibrated probabilities, so (as the CaloChallenge did) a monotone map
from raw score to probability is fitted on held-out data. Monotone maps keep the ranking, so they
change the AUC only through ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pool_adjacent_violators(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares non-decreasing fit to `y` (already ordered by the score)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    means: list[float] = []
    sizes: list[float] = []
    counts: list[int] = []
    for value, weight in zip(y.tolist(), w.tolist()):
        means.append(value)
        sizes.append(weight)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, s2, c2 = means.pop(), sizes.pop(), counts.pop()
            s1 = sizes[-1]
            means[-1] = (means[-1] * s1 + m2 * s2) / (s1 + s2)
            sizes[-1] = s1 + s2
            counts[-1] += c2
    return np.repeat(means, counts)


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Piecewise-linear monotone map score -> probability; clipped outside the fitted range.

    Probabilities are kept within [1/(n+1), n/(n+1)] for n fitted rows: a block of the fit that
    held only one class says the probability is small, not zero, and an exact 0 or 1 would turn
    one test shower into a cross-entropy of 100 (torch's clamp) and the JSD estimate negative.
    """

    x: np.ndarray
    y: np.ndarray
    eps: float = 0.0

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray) -> "IsotonicCalibrator":
        scores = np.asarray(scores, dtype=np.float64).ravel()
        labels = np.asarray(labels, dtype=np.float64).ravel()
        # Equal scores must get one value: merge them first (mean label, weight = multiplicity).
        uniq, inverse, mult = np.unique(scores, return_inverse=True, return_counts=True)
        mean_label = np.bincount(inverse, weights=labels) / mult
        fitted = pool_adjacent_violators(mean_label, mult.astype(np.float64))
        # Keep only the ends of each constant block: interpolation between them is the fit.
        keep = np.ones(len(uniq), dtype=bool)
        if len(uniq) > 2:
            same_prev = np.r_[False, fitted[1:] == fitted[:-1]]
            same_next = np.r_[fitted[:-1] == fitted[1:], False]
            keep = ~(same_prev & same_next)
        return cls(uniq[keep], fitted[keep], 1.0 / (len(scores) + 1))

    def predict(self, scores: np.ndarray) -> np.ndarray:
        p = np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)
        return np.clip(p, self.eps, 1.0 - self.eps)
