"""Histogram comparison: binning from the reference sample, separation power per feature.

Separation power (the CaloChallenge's histogram metric) is 0.5 * sum_i (h1_i - h2_i)^2 / (h1_i + h2_i)
over histograms normalised to unit sum: 0 for identical shapes, 1 for disjoint ones. Bins come from
the reference only (a quantile range, log-spaced for energies), so a generated sample cannot move
its own goalposts; entries outside the range are folded into the edge bins, so a sample shifted
out of range still counts as different instead of vanishing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Binning:
    """`n_bins` equal bins in x (or in log10 x when `log`) between lo and hi."""

    lo: float
    hi: float
    n_bins: int
    log: bool = False

    @property
    def edges(self) -> np.ndarray:
        e = np.linspace(self.lo, self.hi, self.n_bins + 1)
        return 10.0**e if self.log else e

    def transform(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if not self.log:
            return values
        with np.errstate(divide="ignore"):
            return np.log10(np.where(values > 0, values, 0.0))

    def counts(self, values: np.ndarray, drop_below: bool = False) -> np.ndarray:
        """Raw counts; overflow goes to the last bin, underflow to the first (or is dropped)."""
        t = self.transform(values)
        t = t[~np.isnan(t)]
        if drop_below:
            t = t[t >= self.lo]
        idx = np.floor((t - self.lo) / (self.hi - self.lo) * self.n_bins)
        idx = np.clip(np.nan_to_num(idx, neginf=0, posinf=self.n_bins - 1), 0, self.n_bins - 1).astype(np.int64)
        return np.bincount(idx, minlength=self.n_bins).astype(np.float64)


def reference_binning(
    reference: np.ndarray, n_bins: int, log: bool = False, quantiles: tuple[float, float] = (0.0, 1.0)
) -> Binning:
    """Bins spanning the reference's [q_lo, q_hi] quantile range (positive values only when `log`)."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[np.isfinite(values)]
    if log:
        values = values[values > 0]
        if values.size == 0:
            return reference_binning(np.asarray(reference), n_bins, log=False, quantiles=quantiles)
        values = np.log10(values)
    if values.size == 0:
        return Binning(-0.5, 0.5, n_bins, False)
    lo, hi = (float(v) for v in np.quantile(values, quantiles))
    if not hi > lo:  # a constant reference: one value in the middle of a unit-wide range
        half = 0.5 if lo == 0 else 0.5 * abs(lo)
        lo, hi = lo - half, hi + half
    return Binning(lo, hi, int(n_bins), log)


def normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else counts


def separation_power(h_ref: np.ndarray, h_gen: np.ndarray) -> float:
    """0.5 * sum (h1 - h2)^2 / (h1 + h2) of the two histograms normalised to unit sum."""
    p, q = normalise(np.asarray(h_ref, float)), normalise(np.asarray(h_gen, float))
    s = p + q
    mask = s > 0
    return float(0.5 * np.sum((p[mask] - q[mask]) ** 2 / s[mask]))


@dataclass(frozen=True)
class HistComparison:
    """One feature's histograms (raw counts) under the reference binning, and their separation power."""

    name: str
    binning: Binning
    counts_ref: np.ndarray
    counts_gen: np.ndarray

    @property
    def separation_power(self) -> float:
        return separation_power(self.counts_ref, self.counts_gen)


def compare_features(
    reference: Mapping[str, np.ndarray],
    generated: Mapping[str, np.ndarray],
    n_bins: int,
    log_names: set[str] | frozenset[str] = frozenset(),
    quantiles: tuple[float, float] = (0.0, 1.0),
) -> dict[str, HistComparison]:
    """Histogram every feature of `reference` and `generated` under reference binning."""
    out: dict[str, HistComparison] = {}
    for name, ref_values in reference.items():
        binning = reference_binning(ref_values, n_bins, log=name in log_names, quantiles=quantiles)
        out[name] = HistComparison(name, binning, binning.counts(ref_values), binning.counts(generated[name]))
    return out


def compare_voxel_energies(
    reference: np.ndarray, generated: np.ndarray, n_bins: int, min_energy_mev: float, chunk_rows: int = 4096
) -> HistComparison:
    """Distribution of single-voxel energies above `min_energy_mev`, log-binned up to the reference maximum
    (voxels below the threshold are left out, as in the challenge; sparsity covers them)."""
    ref_max = float(np.max(reference)) if reference.size else 0.0
    lo = np.log10(min_energy_mev)
    hi = np.log10(ref_max) if ref_max > min_energy_mev else lo + 1.0
    binning = Binning(lo, hi, int(n_bins), log=True)

    def chunked(arr: np.ndarray) -> np.ndarray:
        total = np.zeros(binning.n_bins)
        for i in range(0, arr.shape[0], chunk_rows):
            block = arr[i : i + chunk_rows]
            total += binning.counts(block[block > min_energy_mev], drop_below=True)
        return total

    return HistComparison("voxel_energy", binning, chunked(reference), chunked(generated))
