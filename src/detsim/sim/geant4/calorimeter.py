"""The cylindrical sampling calorimeter Geant4 builds, read from the detector config's `geant4` section.

A sub-layer is absorber then active material; `sublayers_per_readout` consecutive sub-layers form one
read-out layer of the detsim Geometry, whose cells (angular wedges, then radial rings, alpha bin 0 at
-pi) cover the active disk r < the geometry's last radial edge. Active material outside that radius
(out to `radius_mm`) is simulated but not read out, as in the CaloChallenge datasets 2 and 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from detsim.errors import ConfigError
from detsim.geometry import Geometry, RadialLayer

KEV = 1e-3


@dataclass(frozen=True)
class SamplingCalorimeter:
    name: str
    absorber_material: str
    absorber_mm: float
    active_material: str
    active_mm: float
    n_sublayers: int
    sublayers_per_readout: int
    radius_mm: float
    r_edges: tuple[float, ...]
    n_alpha: int
    threshold_mev: float  # per-voxel threshold on the active-material deposit
    sampling_fraction: float | None

    @property
    def n_layers(self) -> int:
        return self.n_sublayers // self.sublayers_per_readout

    @property
    def n_r(self) -> int:
        return len(self.r_edges) - 1

    @property
    def readout_radius_mm(self) -> float:
        return float(self.r_edges[-1])

    @property
    def sublayer_mm(self) -> float:
        return self.absorber_mm + self.active_mm

    @property
    def length_mm(self) -> float:
        return self.n_sublayers * self.sublayer_mm

    @property
    def uniform_rings(self) -> bool:
        widths = np.diff(self.r_edges)
        return bool(self.r_edges[0] == 0 and np.allclose(widths, widths[0]))

    def describe(self) -> str:
        return (
            f"{self.n_sublayers} x ({self.absorber_mm} mm {self.absorber_material} + {self.active_mm} mm "
            f"{self.active_material}), read-out layer = {self.sublayers_per_readout} sub-layers, "
            f"{self.n_alpha} alpha x {self.n_r} r cells to r = {self.readout_radius_mm} mm, disk r = {self.radius_mm} mm"
        )


def _need(section: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in section or section[key] is None:
        raise ConfigError(f"{where}: key {key!r}: expected a value, found none")
    return section[key]


def calorimeter_from_config(detector: Mapping[str, Any], geometry: Geometry) -> SamplingCalorimeter:
    """Check the detector's `geant4` section against the read-out Geometry and build the description."""
    name = str(detector.get("name", "detector"))
    where = f"detector {name!r} geant4"
    g4 = detector.get("geant4")
    if not isinstance(g4, Mapping):
        raise ConfigError(f"detector {name!r}: key 'geant4': expected the sampling-calorimeter section, found {g4!r}")
    absorber, active = _need(g4, "absorber", where), _need(g4, "active", where)
    layers = geometry.layers
    first = layers[0]
    if not all(isinstance(layer, RadialLayer) for layer in layers) or any(
        tuple(layer.r_edges) != tuple(first.r_edges) or layer.n_alpha != first.n_alpha for layer in layers
    ):
        raise ConfigError(f"geometry {geometry.name!r}: expected identical radial layers for the Geant4 backend, found otherwise")
    calo = SamplingCalorimeter(
        name=name,
        absorber_material=str(_need(absorber, "material", where + ".absorber")),
        absorber_mm=float(_need(absorber, "thickness_mm", where + ".absorber")),
        active_material=str(_need(active, "material", where + ".active")),
        active_mm=float(_need(active, "thickness_mm", where + ".active")),
        n_sublayers=int(_need(g4, "n_sublayers", where)),
        sublayers_per_readout=int(_need(g4, "sublayers_per_readout", where)),
        radius_mm=float(_need(g4, "radius_mm", where)),
        r_edges=tuple(float(r) for r in first.r_edges),
        n_alpha=int(first.n_alpha),
        threshold_mev=float(g4.get("threshold_keV", 0.0)) * KEV,
        sampling_fraction=None if g4.get("sampling_fraction") is None else float(g4["sampling_fraction"]),
    )
    if calo.n_sublayers % calo.sublayers_per_readout or calo.n_layers != geometry.n_layers:
        raise ConfigError(
            f"{where}: expected n_sublayers / sublayers_per_readout = {geometry.n_layers} read-out layers of "
            f"geometry {geometry.name!r}, found {calo.n_sublayers} / {calo.sublayers_per_readout}"
        )
    if calo.radius_mm < calo.readout_radius_mm:
        raise ConfigError(f"{where}: key 'radius_mm': expected >= read-out radius {calo.readout_radius_mm}, found {calo.radius_mm}")
    if calo.sampling_fraction is not None and not 0 < calo.sampling_fraction < 1:
        raise ConfigError(f"{where}: key 'sampling_fraction': expected a value in (0, 1), found {calo.sampling_fraction}")
    return calo
