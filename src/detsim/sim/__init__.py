"""Reference simulators: parametrised calorimeter showers (`calo`); gravitational-wave strain lives beside it.

`simulate_showers` is the vectorised core; `quick_sample` composes the repository configs (Hydra
compose API) so a test or notebook gets realistic showers in one call.
"""

from __future__ import annotations

import numpy as np

from detsim.showers import CaloShowers
from detsim.sim.calo.config import compose_simulate_config, plan_from_config
from detsim.sim.calo.runner import iter_chunks
from detsim.sim.calo.shower import simulate_showers


def quick_sample(
    geometry: str = "calochallenge_ds1_photons",
    particle: str = "photon",
    n: int = 1000,
    seed: int = 0,
    energies: np.ndarray | None = None,
    overrides: list[str] | None = None,
) -> CaloShowers:
    """n showers of `particle` in a configured geometry; energies default to the geometry's spectrum.

    The same (geometry, particle, n, seed, overrides) gives the same showers as `detsim-simulate`.
    """
    cfg = compose_simulate_config([f"geometry={geometry}", f"particle={particle}", *(overrides or [])])
    plan = plan_from_config(cfg)
    e = None if energies is None else np.asarray(energies, dtype=np.float64).reshape(-1)
    n = n if e is None else e.size
    sim = cfg.simulator
    parts = list(iter_chunks(plan, n, seed, max(n, 1), int(sim.block_size), int(sim.get("threads", 1)), e))
    if not parts:
        return simulate_showers(plan.geometry, plan.detector, plan.particle, np.zeros(0) + 1.0, np.random.default_rng(seed))[:0]
    return CaloShowers.concatenate(parts)


__all__ = ["simulate_showers", "quick_sample"]
