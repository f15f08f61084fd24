"""Parametrised calorimeter showers: GFlash electromagnetic showers and a simple pion model."""

from detsim.sim.calo.shower import simulate_showers

__all__ = ["simulate_showers"]
