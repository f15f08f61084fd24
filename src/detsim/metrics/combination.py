"""Two detection statistics combined into one, with the combination fitted on other samples than those it scores.

Why: the CNN and the matched-filter search are each short of optimal in their own way, so their false alarms are
partly different noise excursions, and a weighted sum of the two statistics can rank signals better than either.
How much better says how far the better of the two is from the best detector the data allow. The weight is chosen
to maximise the AUC on all folds but one and applied to the held-out fold (cross-fitting), so no sample is scored
by a weight fitted on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detsim.metrics.roc import roc_auc


@dataclass
class Combination:
    """Cross-fitted combined statistic, each sample's fold, and per fold the weight angle (0: only `a`, pi/2: only `b`)."""

    scores: np.ndarray
    fold: np.ndarray
    angles: list[float]

    @property
    def weights_of_b(self) -> list[float]:
        """Share of `b` in each fold's combination, sin / (cos + sin) of the angle."""
        return [float(np.sin(t) / (np.cos(t) + np.sin(t))) for t in self.angles]


def _standardise(a: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(a - mean) / std of the noise-only rows `noise`: puts two statistics on one scale before they are added."""
    std = float(np.std(noise))
    if not std > 0:
        raise ValueError("a statistic is constant on the noise-only samples; it cannot be standardised")
    return (a - float(np.mean(noise))) / std


def combined(a: np.ndarray, b: np.ndarray, noise: np.ndarray, angle: float) -> np.ndarray:
    """cos(angle) z_a + sin(angle) z_b, each z standardised on the rows `noise` (a boolean mask), and the sum scaled
    to unit noise std so that folds fitted with different angles share one scale."""
    za, zb = _standardise(a, a[noise]), _standardise(b, b[noise])
    s = np.cos(angle) * za + np.sin(angle) * zb
    return s / float(np.std(s[noise]))


def best_angle(a: np.ndarray, b: np.ndarray, target: np.ndarray, n_angles: int = 41) -> float:
    """The angle in [0, pi/2] (non-negative weights: both statistics grow with the signal) whose combination has
    the highest AUC on these samples."""
    noise = target == 0
    angles = np.linspace(0.0, np.pi / 2, int(n_angles))
    aucs = [roc_auc(target, combined(a, b, noise, t)) for t in angles]
    return float(angles[int(np.argmax(aucs))])


def crossfit_combination(a: np.ndarray, b: np.ndarray, target: np.ndarray, folds: int = 2, n_angles: int = 41,
                         seed: int = 0) -> Combination:
    """Combine statistics `a` and `b` of the same samples: each fold is scored with the angle and the noise
    standardisation fitted on the other folds."""
    a, b, target = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(target)
    if not len(a) == len(b) == len(target):
        raise ValueError(f"statistics and labels differ in length: {len(a)}, {len(b)}, {len(target)}")
    for name, values in (("a", a), ("b", b)):
        if not np.isfinite(values).all():
            raise ValueError(f"statistic {name} has {int(np.sum(~np.isfinite(values)))} non-finite values; score them first")
    if folds < 2:
        raise ValueError(f"folds must be >= 2 so that no sample is scored by a weight fitted on it; got {folds}")
    fold_of = np.random.default_rng(seed).permutation(len(target)) % folds
    out = np.empty(len(target))
    angles = []
    for k in range(folds):
        fit, held = fold_of != k, fold_of == k
        if not (0 < target[fit].sum() < fit.sum()):
            raise ValueError(f"fold {k}: the fitting samples need both signals and noise; use fewer folds")
        angle = best_angle(a[fit], b[fit], target[fit], n_angles)
        noise_fit = fit & (target == 0)
        out[held] = combined(a, b, noise_fit, angle)[held]     # scales from the fitting folds' noise only
        angles.append(angle)
    return Combination(out, fold_of, angles)

