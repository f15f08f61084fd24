"""Electromagnetic showers: the Grindhammer-Peters (GFlash) parametrisation.

Longitudinal: dE/dt = E Gamma(t; alpha, beta) with t in X0 from the shower start; T = (alpha-1)/beta
is the depth of maximum. ln T and ln alpha fluctuate shower by shower as correlated Gaussians
(hep-ex/0001020, sampling-calorimeter variant with Fs = X0_eff / d_period and ehat = e/mip).
Radial: f(r) = p 2rRc^2/(r^2+Rc^2)^2 + (1-p) 2rRt^2/(r^2+Rt^2)^2 with r in Moliere radii; Rc, Rt and p
depend on tau = t/T, so the shower widens with depth. All coefficients come from `model.em` in config.
A detector may carry `em.calibration` (measured against Geant4, docs/studies/2026-11-30-parametric-vs-geant4.md):
shifts of <ln T> and <ln alpha> linear in ln y, a scale of their widths, a virtual start depth of
electron showers in front of the calorimeter (the profile's rise is then partly inside it) and a
scale of the core radius. Absent keys leave the published GFlash parametrisation unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from scipy.special import gammainc

from detsim.sim.calo.deposit import Component, gamma_fractions

if TYPE_CHECKING:  # annotations only
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


def calibration(mat: Mapping[str, Any]) -> dict[str, Any]:
    """The detector's `em.calibration` block with neutral defaults for absent keys."""
    cal = dict(mat.get("calibration") or {})
    return {
        "lnT": tuple(cal.get("lnT", (0.0, 0.0))),
        "lnalpha": tuple(cal.get("lnalpha", (0.0, 0.0))),
        "sigma_scale": float(cal.get("sigma_scale", 1.0)),
        "rho_shift": float(cal.get("rho_shift", 0.0)),
        "start_X0": float(cal.get("start_X0", 0.0)),
        "core_scale": float(cal.get("core_scale", 1.0)),
        "track_MeV_per_X0": float(cal.get("track_MeV_per_X0", 0.0)),
        "track_X0": float(cal.get("track_X0", 0.0)),
        "track_radius_mm": float(cal.get("track_radius_mm", 1.0)),
    }


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
    cal = calibration(mat)
    shift_t = cal["lnT"][0] + cal["lnT"][1] * ln_y
    shift_a = cal["lnalpha"][0] + cal["lnalpha"][1] * ln_y
    return np.log(np.maximum(t_mean, np.exp(0.1))) + shift_t, np.log(np.maximum(a_mean, np.exp(0.1))) + shift_a


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
    cal = calibration(mat)
    sig_t = _width(ln_y, s["sigma_lnT"], cap) * cal["sigma_scale"]
    sig_a = _width(ln_y, s["sigma_lnalpha"], cap) * cal["sigma_scale"]
    rho = np.clip(s["rho"]["r1"] + s["rho"]["r2"] * ln_y + cal["rho_shift"], -0.99, 0.99)
    z1, z2 = rng.standard_normal((2, energy_mev.size))
    c1, c2 = np.sqrt((1.0 + rho) / 2.0), np.sqrt((1.0 - rho) / 2.0)
    T = np.maximum(np.exp(mu_t + sig_t * (c1 * z1 + c2 * z2)), float(em["T_min"]))
    alpha = np.maximum(np.exp(mu_a + sig_a * (c1 * z1 - c2 * z2)), float(em["alpha_min"]))
    return EMLongitudinal(T=T, alpha=alpha, mean_alpha=np.exp(mu_a))


def start_depth(
    particle: str, n: int, em: Mapping[str, Any], rng: np.random.Generator, mat: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Shower start (X0): electrons at the detector's virtual start (`em.calibration.start_X0`, <= 0: the
    Gamma profile rises from before the front face), photons after an exponential path of mean 9/7 X0."""
    if particle == "photon":
        return rng.exponential(float(em["photon_conversion_X0"]), n)
    return np.full(n, calibration(mat or {})["start_X0"])


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
    with_track: bool = True,
) -> list[Component]:
    """An EM shower of `energy_mev` starting at `start_x0`, carrying `visible_mev` in total if contained:
    the (optional) primary track near the face and the Gamma-profile cascade."""
    track = primary_track(visible_mev, start_x0, stack, mat if with_track else {})
    visible_mev = visible_mev - track.energy.sum(axis=1)
    lon = sample_longitudinal(energy_mev, mat, em, rng)
    frac = gamma_fractions(stack.lo_x0, stack.hi_x0, start_x0, lon.alpha, lon.beta)
    # A virtual start in front of the face: the part of the profile before the face is not in the detector
    # (its energy goes into the shower), so the rest is renormalised to carry the whole visible energy.
    before = gammainc(lon.alpha, np.maximum(-start_x0, 0.0) * lon.beta)
    frac = frac / np.maximum(1.0 - before, 1e-6)[:, None]
    age = tau(stack.mid_x0[None, :] - start_x0[:, None], lon)
    r_core, r_tail, p_core = radial_parameters(energy_mev, age, mat, em)
    r_core = r_core * calibration(mat)["core_scale"]
    r_m = stack.slice_r_m[None, :]
    return [track, Component(frac * visible_mev[:, None], r_core * r_m, r_tail * r_m, p_core)]


def primary_track(visible_mev: np.ndarray, start_x0: np.ndarray, stack: LayerStack, mat: Mapping[str, Any]) -> Component:
    """Ionisation of the incident electron and its first soft secondaries near the face, which a Gamma
    profile (zero at t = 0) misses: `track_MeV_per_X0` visible MeV per X0 over the first `track_X0`,
    on the axis, taken from the shower's energy (at most half of it). Zero unless configured."""
    cal = calibration(mat)
    lo = np.maximum(stack.lo_x0[None, :] - np.maximum(start_x0, 0.0)[:, None], 0.0)
    hi = np.minimum(stack.hi_x0[None, :] - np.maximum(start_x0, 0.0)[:, None], cal["track_X0"])
    energy = np.clip(hi - lo, 0.0, None) * cal["track_MeV_per_X0"]
    total = energy.sum(axis=1)
    energy *= (np.minimum(total, 0.5 * visible_mev) / np.maximum(total, 1e-12))[:, None]
    radius = np.full(energy.shape, cal["track_radius_mm"])
    return Component(energy, radius, radius, np.ones_like(radius))
