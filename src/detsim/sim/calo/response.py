"""What the readout sees: sampling fluctuations and voxel-level energy spots (the readout threshold itself is
ground-floor vocabulary, `detsim.readout`).

Two independent fluctuations with the right total variance (Var(E)/E^2 = a^2/(E/GeV) + c^2):
  - per voxel, the visible energy is a sum of energy spots of mean size q = `voxel_quantum_MeV`
    (1 + `voxel_quantum_growth` (r/R_M)^2). With `voxel_spot_shape` k unset it is Gamma(mu/q, q)
    (variance q mu: a continuum of spots); with k set it is compound Poisson: N ~ Poisson(mu/q) spots,
    each Gamma(k, q/k) (k = 1: exponential), variance (1 + 1/k) q mu. The compound Poisson form gives
    faint voxels either nothing or a whole spot, as the charged tracks crossing a thin Si layer do
    (Geant4's halo hits are ~exponential with a mean of ~13 MeV at every radius), instead of a
    continuum of near-threshold values. Either way the spots break the azimuthal symmetry and add
    sum(var)/E_vis^2 to the relative variance of the sum;
  - per shower, a Gamma factor of mean 1 carries the remaining variance a^2/E + c^2 - q/E_vis.
Sums of Gammas with one scale are Gamma, so the total has exactly the configured resolution.
"""

from __future__ import annotations

import numpy as np

GEV = 1000.0


def spot_variance_factor(spot_shape: float | None) -> float:
    """Var(voxel) / (q mu): 1 for the Gamma continuum, 1 + 1/k for compound Poisson with Gamma(k) spots."""
    return 1.0 if spot_shape is None else 1.0 + 1.0 / float(spot_shape)


def shower_factor_variance(
    energy_mev: np.ndarray, stochastic: float, constant: float, quantum_mev: float | np.ndarray, visible_mev: np.ndarray,
    spot_shape: float | None = None,
) -> np.ndarray:
    """Relative variance left for the per-shower factor once the voxel spots have taken theirs."""
    total = stochastic**2 * GEV / np.maximum(energy_mev, 1e-9) + constant**2
    spots = spot_variance_factor(spot_shape) * quantum_mev / np.maximum(visible_mev, 1e-9)
    return np.maximum(total - spots, 0.0)


def shower_factor(rel_var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma factors of mean 1 and the given relative variance (1 where the variance is 0)."""
    v = np.maximum(rel_var, 1e-12)
    return np.where(rel_var > 0, rng.gamma(1.0 / v, v), 1.0)


def voxel_spots(
    mean_mev: np.ndarray, quantum_mev: np.ndarray, rng: np.random.Generator, spot_shape: float | None = None
) -> np.ndarray:
    """Visible energy per voxel (float32), mean `mean_mev`, spot size q per voxel ((n_voxels,)).

    spot_shape None: Gamma(mu/q, q). spot_shape k: N ~ Poisson(mu/q) spots of Gamma(k, q/k) each, drawn
    as one Gamma(N k, q/k) (a sum of Gammas with one scale), so a voxel with N = 0 stays exactly empty.
    """
    q = np.asarray(quantum_mev, dtype=np.float64)
    if np.all(q <= 0):
        return mean_mev.astype(np.float32)
    q = np.maximum(q, 1e-9)
    lam = np.maximum(mean_mev, 0.0) / q
    if spot_shape is None:
        return (rng.standard_gamma(lam) * q).astype(np.float32)
    k = float(spot_shape)
    n_spots = rng.poisson(lam)
    out = np.zeros(mean_mev.shape, dtype=np.float32)
    hit = n_spots > 0  # most ds2 voxels get no spot: draw Gammas only where there is one
    scale = np.broadcast_to(q / k, mean_mev.shape)[hit]
    out[hit] = rng.standard_gamma(n_spots[hit] * k) * scale
    return out

