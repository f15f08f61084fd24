"""A sample reduced once to the per-shower numbers every statistic of the physics report needs (MeV), chunk by
chunk, so its voxels are passed over once and can then be freed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from detsim.errors import ConfigError
from detsim.geometry import Geometry, GridLayer, RadialLayer
from detsim.showers import CaloShowers


def radial_rings(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(ring edges (n_rings, 2) in mm, ring of each voxel): the radial bins of the union of all layers' r edges,
    each voxel in the ring that holds its centre, rings without a voxel dropped.

    For uniform geometries (datasets 2 and 3) these are the layers' own rings; where layers are binned
    differently (dataset 1) the rings stay comparable in mm when summed over layers. Grid layers (CaloGAN)
    add rings one cell wide, by the distance of the cell centres from the axis."""
    edges = {float(e) for layer in geometry.layers if isinstance(layer, RadialLayer) for e in layer.r_edges}
    r_centre = geometry.cell_centres_polar[0]
    grids = [layer for layer in geometry.layers if isinstance(layer, GridLayer)]
    if grids:
        step = min(min(g.cell_x, g.cell_y) for g in grids)
        edges |= set(np.arange(0.0, r_centre.max() + 2 * step, step).tolist())
    sorted_edges = np.array(sorted(edges))
    index = np.clip(np.searchsorted(sorted_edges, r_centre, side="right") - 1, 0, len(sorted_edges) - 2)
    used, ring = np.unique(index, return_inverse=True)
    return np.stack([sorted_edges[used], sorted_edges[used + 1]], axis=1), ring


@dataclass
class ShowerSummaries:
    """The per-shower numbers the report needs (MeV): a sample reduced once, so its voxels can be freed.

    E_tot is the sum of the layer energies; `n_hits` counts the voxels at or above the readout threshold."""

    incident_energy: np.ndarray  # (N,)
    layer_energy: np.ndarray  # (N, n_layers)
    ring_energy: np.ndarray  # (N, n_rings)
    n_hits: np.ndarray  # (N,)
    max_voxel: np.ndarray  # (N,)
    n_voxels: int

    def __len__(self) -> int:
        return len(self.incident_energy)

    @property
    def total_energy(self) -> np.ndarray:
        return self.layer_energy.sum(axis=1)

    @staticmethod
    def concatenate(parts: Iterable["ShowerSummaries"]) -> "ShowerSummaries":
        """One summary from the summaries of chunks (a file streamed chunk by chunk)."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        fields = ("incident_energy", "layer_energy", "ring_energy", "n_hits", "max_voxel")
        return ShowerSummaries(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields), parts[0].n_voxels)


def summarize(showers: CaloShowers, geometry: Geometry, threshold_mev: float = 0.0,
              chunk_rows: int = 1024) -> ShowerSummaries:
    """Reduce showers to `ShowerSummaries`, `chunk_rows` rows at a time (float64 sums, bounded copies).

    Voxels below `threshold_mev` (the readout threshold) count for nothing, as in the challenge's evaluation: a
    hit is a voxel at or above it (and above 0); showers already read through it give the same numbers."""
    if showers.n_voxels != geometry.n_voxels:
        raise ConfigError(f"showers have {showers.n_voxels} voxels, geometry {geometry.name} has {geometry.n_voxels}")
    _, ring = radial_rings(geometry)
    ring_map = np.zeros((geometry.n_voxels, int(ring.max()) + 1))
    ring_map[np.arange(geometry.n_voxels), ring] = 1.0
    layers, rings, hits, peaks = [], [], [], []
    for start in range(0, len(showers), chunk_rows):
        cells = showers.showers[start : start + chunk_rows].astype(np.float64)
        if threshold_mev > 0:
            cells[cells < threshold_mev] = 0.0
        layers.append(geometry.layer_energies(cells))
        rings.append(cells @ ring_map)
        hits.append(np.count_nonzero(cells > 0, axis=1))
        peaks.append(cells.max(axis=1, initial=0.0))
    n_layers, n_rings = geometry.n_layers, ring_map.shape[1]
    return ShowerSummaries(
        showers.incident_energy.astype(np.float64),
        np.concatenate(layers) if layers else np.zeros((0, n_layers)),
        np.concatenate(rings) if rings else np.zeros((0, n_rings)),
        np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64),
        np.concatenate(peaks) if peaks else np.zeros(0),
        geometry.n_voxels,
    )
