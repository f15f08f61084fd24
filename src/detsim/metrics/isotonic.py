"""Isotonic calibration of classifier outputs (scikit-learn's `IsotonicRegression`).

A classifier trained to tell two samples apart is rarely calibrated; the JSD estimate from its
binary cross-entropy needs calibrated probabilities, so (as the CaloChallenge did) a monotone map
from raw score to probability is fitted on held-out data. Monotone maps keep the ranking, so they
change the AUC only through ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Piecewise-linear monotone map score -> probability; clipped outside the fitted range.

    Probabilities are kept within [1/(n+1), n/(n+1)] for n fitted rows: a block of the fit that
    held only one class says the probability is small, not zero, and an exact 0 or 1 would turn
    one test shower into a cross-entropy of 100 (torch's clamp) and the JSD estimate negative.
    """

    regression: IsotonicRegression
    eps: float = 0.0

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray) -> "IsotonicCalibrator":
        scores = np.asarray(scores, dtype=np.float64).ravel()
        labels = np.asarray(labels, dtype=np.float64).ravel()
        regression = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        regression.fit(scores, labels)
        return cls(regression, 1.0 / (len(scores) + 1))

    def predict(self, scores: np.ndarray) -> np.ndarray:
        p = self.regression.predict(np.asarray(scores, dtype=np.float64).ravel())
        return np.clip(p, self.eps, 1.0 - self.eps)
