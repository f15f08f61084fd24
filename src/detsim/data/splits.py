"""Train / validation / test partitions that keep each class's share in every part.

scikit-learn's `train_test_split(stratify=...)` does the partitioning (a maintained, tested routine); this
module only turns three fractions into its two calls and checks the fractions a user configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from detsim.errors import ConfigError


@dataclass
class Split:
    """Row indices of the train / validation / test parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator) -> Split:
    """Split rows so that every part keeps the class balance of `labels`; rows beyond sum(fractions) are unused."""
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f <= 0) or f.sum() > 1 + 1e-9:
        raise ConfigError(f"split fractions (train, val, test) must be 3 positive numbers summing to <= 1, got {fractions}")
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    seed = int(rng.integers(2**31 - 1))
    if f.sum() < 1 - 1e-9:
        rows, _ = train_test_split(rows, train_size=float(f.sum()), stratify=labels, random_state=seed)
    f = f / f.sum()
    train, rest = train_test_split(rows, train_size=float(f[0]), stratify=labels[rows], random_state=seed + 1)
    val, test = train_test_split(rest, train_size=float(f[1] / (f[1] + f[2])), stratify=labels[rest], random_state=seed + 2)
    return Split(np.sort(train)[rng.permutation(len(train))], rng.permutation(val), rng.permutation(test))
