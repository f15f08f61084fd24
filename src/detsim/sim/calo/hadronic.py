"""A simple charged-pion shower: enough physics that a classifier has a real difference to learn.

The pion travels as a MIP to an exponentially distributed first-interaction depth (lambda_int units);
there the shower splits into an electromagnetic part (pi0 -> gamma gamma) with a fluctuating fraction
<f_em> = 1 - (E/E0)^(k-1), simulated as a GFlash EM shower, and a hadronic part with a Gamma profile in
lambda_int, wider radii and a lower visible response (e/h > 1). Coefficients: `model.hadronic`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detsim.sim.calo.deposit import Component, gamma_fractions
from detsim.sim.calo.em import em_component
from detsim.sim.calo.response import shower_factor, shower_factor_variance
from detsim.sim.calo.stack import LayerStack

GEV = 1000.0


def sample_em_fraction(energy_mev: np.ndarray, cfg: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """f_em per shower: Beta-distributed around 1 - (E/E0)^(k-1) with the configured concentration."""
    mean = 1.0 - (energy_mev / float(cfg["E0_MeV"])) ** (float(cfg["k"]) - 1.0)
    mean = np.clip(mean, 0.02, 0.98)
    kappa = float(cfg["concentration"])
    return rng.beta(mean * kappa, (1.0 - mean) * kappa)


def pion_components(
    energy_mev: np.ndarray,
    stack: LayerStack,
    detector: Mapping[str, Any],
    model: Mapping[str, Any],
    rng: np.random.Generator,
    quantum: float,
) -> list[Component]:
    """MIP track, EM part and hadronic part of pion showers, each with its visible energy per slice.

    `quantum` (MeV) is the voxel spot size whose share of the variance the shower factors leave out.
    """
    had = model["hadronic"]
    det_had = detector["hadronic"]
    response = float(detector["response"])
    shape = detector.get("voxel_spot_shape")
    n = energy_mev.size
    first = rng.exponential(1.0, n)  # depth of the first interaction, lambda_int
    # MIP ionisation before the first interaction, on the axis; it is taken from the shower energy.
    mip_per_lambda = float(had["mip_MeV_per_lambda"])
    overlap = np.clip(np.minimum(stack.hi_lambda[None, :], first[:, None]) - stack.lo_lambda[None, :], 0.0, None)
    lost_to_mip = np.minimum(mip_per_lambda * np.minimum(first, stack.edges_lambda[-1]), 0.5 * energy_mev)
    shower_e = energy_mev - lost_to_mip
    mip_r = np.full((n, stack.n_slices), float(had["mip_radius_mm"]))
    mip = Component(overlap * (response * mip_per_lambda), mip_r, mip_r, np.ones_like(mip_r))

    f_em = sample_em_fraction(shower_e, had["f_em"], rng)
    e_em, e_had = f_em * shower_e, (1.0 - f_em) * shower_e
    vis_em = response * e_em
    vis_had = response / float(det_had["e_over_h"]) * e_had
    g_em = shower_factor(
        shower_factor_variance(e_em, float(detector["stochastic_term"]), float(detector["constant_term"]), quantum, vis_em, shape), rng
    )
    g_had = shower_factor(
        shower_factor_variance(e_had, float(det_had["stochastic_term"]), 0.0, quantum, vis_had, shape), rng
    )
    start_x0 = stack.x0_at_lambda(first)
    # The EM part of a hadron shower starts inside the detector: no incident-electron track.
    em = em_component(np.maximum(e_em, 1.0), vis_em * g_em, start_x0, stack, detector["em"], model["em"], rng,
                      with_track=False)[-1]

    # Hadronic part: a Gamma profile in lambda_int from the first interaction, wider with depth.
    lon = had["longitudinal"]
    ln_e = np.log(np.maximum(shower_e, 1.0) / GEV)
    t_max = np.maximum((lon["T"]["t0"] + lon["T"]["t1"] * ln_e) * np.exp(lon["sigma_lnT"] * rng.standard_normal(n)), 0.05)
    alpha = np.maximum(lon["alpha"] * np.exp(lon["sigma_lnalpha"] * rng.standard_normal(n)), 1.05)
    frac = gamma_fractions(stack.lo_lambda, stack.hi_lambda, first, alpha, (alpha - 1.0) / t_max)
    mid = 0.5 * (stack.lo_lambda + stack.hi_lambda)
    age = np.clip(mid[None, :] - first[:, None], 0.0, None) / t_max[:, None]
    rad = had["radial"]
    widen = 1.0 + float(rad["widening"]) * age
    hadronic = Component(
        frac * (vis_had * g_had)[:, None],
        float(rad["core_mm"]) * widen,
        float(rad["tail_mm"]) * widen,
        np.full_like(age, float(rad["core_weight"])),
    )
    return [mip, em, hadronic]
