"""Electromagnetic showers: the Grindhammer-Peters (GFlash) parametrisation.

Longitudinal: dE/dt = E Gamma(t; alpha, beta) with t in X0 from the shower start; T = (alpha-1)/beta
is the depth of maximum. ln T and ln alpha fluctuate shower by shower as correlated Gaussians
(hep-ex/0001020, sampling-calorimeter variant with Fs = X0_eff / d_period and ehat = e/mip).
Radial: f(r) = p 2rRc^2/(r^2+Rc^2)^2 + (1-p) 2rRt^2/(r^2+Rt^2)^2 with r in Moliere radii; Rc, Rt and p
depend on tau = t/T, so the shower widens with depth. All coefficients come from `model.em` in config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:  # annotations only; em_component imports deposit at call time
    from detsim.sim.calo.deposit import Component
    from detsim.sim.calo.stack import LayerStack

GEV = 1000.0


@dataclass(frozen=True)
class EMLongitudinal:
    """Per-shower Gamma profile: T (X0), alpha, beta = (alpha-1)/T, and the mean ln alpha used for tau."""

    T: np.ndarray
    alpha: np.ndarray
    mean_alpha: np.ndarray

    @property
    def beta(self) -> np.ndarray:
        return (self.alpha - 1.0) / self.T


def _is_sampling(mat: Mapping[str, Any]) -> bool:
    return mat.get("Fs") not in (None, 0)


def mean_log_parameters(energy_mev: np.ndarray, mat: Mapping[str, Any], em: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """<ln T> and <ln alpha> for energies (MeV) in the material `mat` (the detector's `em` block)."""
    ln_y = np.log(np.maximum(energy_mev, 1e-3) / float(mat["E_c_MeV"]))
    z = float(mat["Z"])
    hom = em["homogeneous"]
    t_mean = np.maximum(hom["T"]["t1"] + ln_y, 0.1)
    a_mean = np.maximum(hom["alpha"]["a1"] + (hom["alpha"]["a2"] + hom["alpha"]["a3"] / z) * ln_y, 0.1)
    if _is_sampling(mat):
        s = em["sampling"]
        fs, ehat = float(mat["Fs"]), float(mat["ehat"])
        t_mean = t_mean + s["T"]["t1"] / fs + s["T"]["t2"] * (1.0 - ehat)
        a_mean = a_mean + s["alpha"]["a1"] / fs
    return np.log(np.maximum(t_mean, np.exp(0.1))), np.log(np.maximum(a_mean, np.exp(0.1)))


def _width(ln_y: np.ndarray, coeff: Mapping[str, float], cap: float) -> np.ndarray:
    denom = coeff["s1"] + coeff["s2"] * ln_y
    return np.where(denom > 1.0 / cap, 1.0 / np.maximum(denom, 1e-9), cap)


def sample_longitudinal(
    energy_mev: np.ndarray, mat: Mapping[str, Any], em: Mapping[str, Any], rng: np.random.Generator
) -> EMLongitudinal:
    """Draw (T, alpha) per shower with the parametrised widths and ln T - ln alpha correlation."""
    ln_y = np.log(np.maximum(energy_mev, 1e-3) / float(mat["E_c_MeV"]))
    mu_t, mu_a = mean_log_parameters(energy_mev, mat, em)
    s = em["sampling"]
    cap = float(em["sigma_max"])
    sig_t = _width(ln_y, s["sigma_lnT"], cap)
    sig_a = _width(ln_y, s["sigma_lnalpha"], cap)
    rho = np.clip(s["rho"]["r1"] + s["rho"]["r2"] * ln_y, -0.99, 0.99)
    z1, z2 = rng.standard_normal((2, energy_mev.size))
    c1, c2 = np.sqrt((1.0 + rho) / 2.0), np.sqrt((1.0 - rho) / 2.0)
    T = np.maximum(np.exp(mu_t + sig_t * (c1 * z1 + c2 * z2)), float(em["T_min"]))
    alpha = np.maximum(np.exp(mu_a + sig_a * (c1 * z1 - c2 * z2)), float(em["alpha_min"]))
    return EMLongitudinal(T=T, alpha=alpha, mean_alpha=np.exp(mu_a))


def start_depth(particle: str, n: int, em: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Shower start (X0): electrons at once, photons after an exponential path of mean 9/7 X0."""
    if particle == "photon":
        return rng.exponential(float(em["photon_conversion_X0"]), n)
    return np.zeros(n)


def tau(depth_x0: np.ndarray, lon: EMLongitudinal) -> np.ndarray:
    """Shower age t/T scaled so that the mean shower has tau = <t>/T_mean at its centre of gravity (GFlash)."""
    scale = (lon.alpha - 1.0) / lon.alpha / lon.T * lon.mean_alpha / np.maximum(lon.mean_alpha - 1.0, 1e-3)
    return np.maximum(depth_x0, 0.0) * scale[:, None]


def radial_parameters(
    energy_mev: np.ndarray, tau_: np.ndarray, mat: Mapping[str, Any], em: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Rc, Rt, p) in Moliere radii at age tau (N, S) for showers of energy (N,) MeV."""
    z = float(mat["Z"])
    ln_e = np.log(np.maximum(energy_mev, 1e-3) / GEV)[:, None]
    rc_c, rt_c, w_c = em["radial"]["core"], em["radial"]["tail"], em["radial"]["weight"]
    r_core = rc_c["c1"] + rc_c["c2"] * ln_e + (rc_c["c3"] + rc_c["c4"] * z) * tau_
    p1 = w_c["c1"] + w_c["c2"] * z
    p2 = w_c["c3"] + w_c["c4"] * z
    p3 = w_c["c5"] + w_c["c6"] * ln_e
    x = (p2 - tau_) / p3
    p_core = p1 * np.exp(x - np.exp(x))
    k1 = rt_c["t1"] + rt_c["t2"] * z
    k4 = rt_c["t5"] + rt_c["t6"] * ln_e
    r_tail = k1 * (np.exp(rt_c["k3"] * (tau_ - rt_c["k2"])) + np.exp(k4 * (tau_ - rt_c["k2"])))
    if _is_sampling(mat):
        s = em["sampling"]["radial"]
        fs, one_minus_ehat = float(mat["Fs"]), 1.0 - float(mat["ehat"])
        r_core = r_core + s["rc1"] * one_minus_ehat + s["rc2"] / fs * np.exp(-tau_)
        p_core = p_core + one_minus_ehat * (s["wc1"] + s["wc2"] / fs * np.exp(-((tau_ - 1.0) ** 2)))
        r_tail = r_tail + s["rt1"] * one_minus_ehat + s["rt2"] / fs * np.exp(-tau_)
    r_core = np.maximum(r_core, 1e-3)
    r_tail = np.maximum(r_tail, r_core)
    return r_core, r_tail, np.clip(p_core, 0.0, 1.0)


def em_component(
    energy_mev: np.ndarray,
    visible_mev: np.ndarray,
    start_x0: np.ndarray,
    stack: LayerStack,
    mat: Mapping[str, Any],
    em: Mapping[str, Any],
    rng: np.random.Generator,
) -> Component:
    """An EM shower of `energy_mev` starting at `start_x0`, carrying `visible_mev` in total if contained."""
    from detsim.sim.calo.deposit import Component, gamma_fractions

    lon = sample_longitudinal(energy_mev, mat, em, rng)
    frac = gamma_fractions(stack.lo_x0, stack.hi_x0, start_x0, lon.alpha, lon.beta)
    age = tau(stack.mid_x0[None, :] - start_x0[:, None], lon)
    r_core, r_tail, p_core = radial_parameters(energy_mev, age, mat, em)
    r_m = stack.slice_r_m[None, :]
    return Component(frac * visible_mev[:, None], r_core * r_m, r_tail * r_m, p_core)
