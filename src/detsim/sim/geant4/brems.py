"""Stand-in bremsstrahlung tables: the screened Bethe-Heitler cross section (Tsai) in the Seltzer-Berger format.

Geant4's G4SeltzerBergerModel (e-/e+ below 1 GeV in EM option1) reads `brem_SB/br<Z>`: a 2D table of the
scaled differential cross section chi(x, y) = (beta^2 / Z^2) k dsigma/dk in millibarn, with x = k / T the
photon energy over the electron kinetic energy and y = ln(T / MeV). File layout (G4Physics2DVector):
`type nx ny`, the nx x nodes, the ny y nodes, then the values row by row (all x for each y).

Physics: Tsai's intermediate-screening Bethe-Heitler formula with the Thomas-Fermi screening functions and
the Coulomb correction (Rev. Mod. Phys. 46 (1974) 815, eqs. 3.9 and 3.38-3.41) — what Geant4's own
relativistic model uses above 1 GeV, so the two meet there. Below a few MeV the Born approximation is poor;
we take the non-relativistic Bethe-Heitler value where it is smaller (no Elwert factor): approximate
below ~10 MeV, where ionisation, not bremsstrahlung, dominates the electron's energy loss.
"""

from __future__ import annotations

import numpy as np

ALPHA = 1.0 / 137.035999
ELECTRON_MASS_MEV = 0.51099895
ALPHA_RE2_MB = 0.579498  # alpha * r_e^2 in millibarn
BREM_FACTOR_MB = 16.0 / 3.0 * ALPHA_RE2_MB  # 16/3 alpha r_e^2, the non-relativistic prefactor

# reduced photon energy nodes: dense near the tip x -> 1 where chi changes fastest
X_NODES = np.array(
    [1e-12, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75,
     0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 1.0]
)
T_MIN_MEV, T_MAX_MEV, N_T = 1e-3, 1e4, 57


def coulomb_correction(z: float) -> float:
    """Davies-Bethe-Maximon Coulomb correction f(Z) (Tsai eq. 3.38 form)."""
    a2 = (ALPHA * z) ** 2
    return a2 * (1.0 / (1.0 + a2) + 0.20206 - 0.0369 * a2 + 0.0083 * a2**2 - 0.002 * a2**3)


def _screening(gamma: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, ...]:
    """Tsai's fits of the Thomas-Fermi screening functions phi1, phi2 (nucleus) and psi1, psi2 (electrons)."""
    phi1 = 20.863 - 2.0 * np.log1p((0.55846 * gamma) ** 2) - 4.0 * (1.0 - 0.6 * np.exp(-0.9 * gamma) - 0.4 * np.exp(-1.5 * gamma))
    phi2 = phi1 - 2.0 / 3.0 / (1.0 + 6.5 * gamma + 6.0 * gamma**2)
    psi1 = 28.340 - 2.0 * np.log1p((3.621 * eps) ** 2) - 4.0 * (1.0 - 0.7 * np.exp(-8.0 * eps) - 0.3 * np.exp(-29.2 * eps))
    psi2 = psi1 - 2.0 / 3.0 / (1.0 + 40.0 * eps + 400.0 * eps**2)
    return phi1, phi2, psi1, psi2


def tsai_kdsigma_dk_mb(z: int, kinetic_mev: np.ndarray, k_mev: np.ndarray) -> np.ndarray:
    """k dsigma/dk per atom (mb) for an electron of kinetic energy T emitting a photon k (screened BH)."""
    m = ELECTRON_MASS_MEV
    e0 = kinetic_mev + m
    e1 = np.maximum(e0 - k_mev, m)
    v = k_mev / e0
    delta = 100.0 * m * k_mev / (e0 * e1)
    phi1, phi2, psi1, psi2 = _screening(delta / z ** (1 / 3), delta / z ** (2 / 3))
    ln_z = np.log(z)
    nucleus = z * z * (phi1 - 4.0 / 3.0 * ln_z - 4.0 * coulomb_correction(z)) + z * (psi1 - 8.0 / 3.0 * ln_z)
    tail = z * z * (phi1 - phi2) + z * (psi1 - psi2)
    bracket = (4.0 / 3.0 - 4.0 / 3.0 * v + v * v) * nucleus + 2.0 / 3.0 * (1.0 - v) * tail
    return ALPHA_RE2_MB * np.maximum(bracket, 0.0)


def scaled_dcs_mb(z: int, x: np.ndarray, kinetic_mev: np.ndarray) -> np.ndarray:
    """chi = (beta^2 / Z^2) k dsigma/dk in mb, as G4SeltzerBergerModel expects, on broadcast (x, T)."""
    m = ELECTRON_MASS_MEV
    t = np.asarray(kinetic_mev, dtype=float)
    k = np.asarray(x, dtype=float) * t
    beta2 = t * (t + 2 * m) / (t + m) ** 2
    tsai = tsai_kdsigma_dk_mb(z, t, k) / (z * z)
    p0 = np.sqrt(t * (t + 2 * m))
    t1 = np.maximum(t - k, 0.0)
    p1 = np.sqrt(t1 * (t1 + 2 * m))
    nonrel = BREM_FACTOR_MB * np.log((p0 + p1) / np.maximum(p0 - p1, 1e-300))
    return np.minimum(np.maximum(beta2 * tsai, nonrel), tsai)


def sb_table(z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x nodes, y = ln T nodes, values[ny, nx]) for element Z."""
    y = np.linspace(np.log(T_MIN_MEV), np.log(T_MAX_MEV), N_T)
    values = scaled_dcs_mb(z, X_NODES[None, :], np.exp(y)[:, None])
    return X_NODES, y, np.maximum(values, 1e-6)


def format_sb(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> str:
    """The G4Physics2DVector text: `type nx ny`, x nodes, y nodes, values (one row per y node)."""
    lines = [f"0 {x.size} {y.size}", " ".join(f"{v:.8g}" for v in x), " ".join(f"{v:.8g}" for v in y)]
    lines += [" ".join(f"{v:.6g}" for v in row) for row in values]
    return "\n".join(lines) + "\n"
