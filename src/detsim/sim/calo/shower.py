"""`simulate_showers`: incident particles in, voxel energies out, fully vectorised over showers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np
from omegaconf import OmegaConf

from detsim.config import to_plain
from detsim.errors import ConfigError
from detsim.geometry import Geometry
from detsim.paths import config_dir
from detsim.readout import apply_threshold
from detsim.showers import CaloShowers
from detsim.sim.calo.deposit import QuadratureGrid, deposit
from detsim.sim.calo.em import em_component, start_depth
from detsim.sim.calo.hadronic import pion_components
from detsim.sim.calo.response import shower_factor, shower_factor_variance, voxel_spots
from detsim.sim.calo.stack import LayerStack

PARTICLES = {
    "photon": "photon", "gamma": "photon",
    "electron": "electron", "e-": "electron", "e+": "electron", "positron": "electron",
    "pion": "pion", "pi+": "pion", "pi-": "pion", "piplus": "pion", "piminus": "pion",
}
DETECTOR_KEYS = ("em", "response", "stochastic_term", "constant_term", "voxel_quantum_MeV", "threshold_MeV")


def canonical_particle(particle: str | None) -> str:
    """'photon', 'electron' or 'pion' for any accepted spelling; a ConfigError otherwise."""
    key = str(particle).strip().lower() if particle is not None else ""
    if key not in PARTICLES:
        raise ConfigError(f"key 'particle': expected one of {sorted(PARTICLES)}, found {particle!r}")
    return PARTICLES[key]


@lru_cache(maxsize=1)
def default_model() -> dict[str, Any]:
    """The parametrisation coefficients of conf/simulator/calo.yaml (used when a detector carries none)."""
    path = config_dir() / "simulator" / "calo.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)["model"]


def check_detector(detector: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict with every required key (and `model`, from the simulator defaults if absent)."""
    det = dict(to_plain(detector))
    name = det.get("name", "detector")
    for key in DETECTOR_KEYS:
        if key not in det:
            raise ConfigError(f"detector {name!r}: key {key!r}: expected a value, found none")
    for key in ("X0_mm", "R_M_mm", "E_c_MeV", "Z"):
        if key not in det["em"]:
            raise ConfigError(f"detector {name!r}: key 'em.{key}': expected a material constant, found none")
    det.setdefault("model", default_model())
    return det


def voxel_quantum(geometry: Geometry, det: Mapping[str, Any], stack: LayerStack | None = None) -> np.ndarray:
    """Spot size per voxel: q0 (1 + g (r / R_M)^2) (far from the axis energy may arrive in bigger pieces),
    times 1 - (1 - f) exp(-t / t_f) at layer depth t (X0) with `voxel_quantum_front: {fraction: f, X0: t_f}`:
    near the face the hits are single minimum-ionising crossings, smaller than the spots of the cascade."""
    r, _ = geometry.cell_centres_polar
    growth = float(det.get("voxel_quantum_growth", 0.0))
    q = float(det["voxel_quantum_MeV"]) * (1.0 + growth * (r / float(det["em"]["R_M_mm"])) ** 2)
    front = det.get("voxel_quantum_front")
    if front and stack is not None:
        depth = np.array([stack.mid_x0[stack.slice_layer == k].mean() for k in range(geometry.n_layers)])
        scale = 1.0 - (1.0 - float(front["fraction"])) * np.exp(-depth / float(front["X0"]))
        q = q * scale[geometry.voxel_layer_position]
    return q


def _check_energies(incident_energy: np.ndarray) -> np.ndarray:
    energy = np.asarray(incident_energy, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(energy) | (energy <= 0)
    if bad.any():
        raise ConfigError(
            f"incident_energy: expected finite energies > 0 MeV, found {energy[bad][:3].tolist()} ({int(bad.sum())} bad)"
        )
    return energy


def simulate_showers(
    geometry: Geometry, detector: Mapping, particle: str, incident_energy: np.ndarray, rng: np.random.Generator
) -> CaloShowers:
    """Simulate one shower per incident energy (MeV) of `particle` in `detector`, read out by `geometry`."""
    det = check_detector(detector)
    model = det["model"]
    kind = canonical_particle(particle)
    energy = _check_energies(incident_energy)
    stack = LayerStack.build(geometry, det, float(model["max_slice_X0"]), float(model["max_slice_lambda"]))
    quantum = voxel_quantum(geometry, det, stack)
    spot_shape = det.get("voxel_spot_shape")
    if energy.size == 0:
        return CaloShowers(energy, np.zeros((0, geometry.n_voxels), np.float32))
    quad = QuadratureGrid(int(model["quadrature"]["n_r"]), int(model["quadrature"]["n_phi"]))
    if kind == "pion":
        components = pion_components(energy, stack, det, model, rng, float(quantum.min()))
        mean = deposit(geometry, stack.slice_layer, components, quad, rng)
    else:
        start = start_depth(kind, energy.size, model["em"], rng, det["em"])
        visible = float(det["response"]) * energy
        components = em_component(energy, visible, start, stack, det["em"], model["em"], rng)
        mean = deposit(geometry, stack.slice_layer, components, quad, rng)
        # The spots' share of the variance depends on where the energy went; the shower factor gets the rest.
        q_eff = (mean @ quantum) / np.maximum(mean.sum(axis=1), 1e-9)
        var = shower_factor_variance(
            energy, float(det["stochastic_term"]), float(det["constant_term"]), q_eff, visible, spot_shape
        )
        mean *= shower_factor(var, rng)[:, None]
    showers = apply_threshold(voxel_spots(mean, quantum, rng, spot_shape), float(det["threshold_MeV"]))
    return CaloShowers(energy.astype(np.float32), showers)
