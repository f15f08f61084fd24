"""Gravitational-wave reference simulator: BBH signals in coloured detector noise, G2Net layout."""

from detsim.sim.gw.synth import run, synthesise

__all__ = ["run", "synthesise"]
