"""What the readout sees: sampling fluctuations, voxel-level energy spots, the readout threshold.

Two independent fluctuations with the right total variance (Var(E)/E^2 = a^2/(E/GeV) + c^2):
  - per voxel, the visible energy is Gamma-distributed with mean mu and variance q mu (a sum of
    independent spots of size q = `voxel_quantum_MeV` (1 + `voxel_quantum_growth` (r/R_M)^2)): it
    breaks the azimuthal symmetry, makes faint voxels sparse, and adds sum(q mu)/E_vis^2 to the
    relative variance of the sum;
  - per shower, a Gamma factor of mean 1 carries the remaining variance a^2/E + c^2 - q/E_vis.
Sums of Gammas with one scale are Gamma, so the total has exactly the configured resolution.
"""

from __future__ import annotations

import numpy as np

GEV = 1000.0


def shower_factor_variance(
    energy_mev: np.ndarray, stochastic: float, constant: float, quantum_mev: float | np.ndarray, visible_mev: np.ndarray
) -> np.ndarray:
    """Relative variance left for the per-shower factor once the voxel spots have taken theirs."""
    total = stochastic**2 * GEV / np.maximum(energy_mev, 1e-9) + constant**2
    spots = quantum_mev / np.maximum(visible_mev, 1e-9)
    return np.maximum(total - spots, 0.0)


def shower_factor(rel_var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma factors of mean 1 and the given relative variance (1 where the variance is 0)."""
    v = np.maximum(rel_var, 1e-12)
    return np.where(rel_var > 0, rng.gamma(1.0 / v, v), 1.0)


def voxel_spots(mean_mev: np.ndarray, quantum_mev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma(mu / q, q) per voxel (q per voxel, (n_voxels,)): mean mu, variance q mu (float32 output)."""
    q = np.asarray(quantum_mev, dtype=np.float64)
    if np.all(q <= 0):
        return mean_mev.astype(np.float32)
    q = np.maximum(q, 1e-9)
    return (rng.standard_gamma(np.maximum(mean_mev, 0.0) / q) * q).astype(np.float32)


def apply_threshold(showers: np.ndarray, threshold_mev: float) -> np.ndarray:
    """Zero every voxel below the readout threshold (in place)."""
    if threshold_mev > 0:
        showers[showers < threshold_mev] = 0.0
    return showers
