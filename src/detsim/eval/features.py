"""High-level shower features, defined as in the CaloChallenge 2022 evaluation.

Per shower: E_tot/E_inc; per layer: deposited energy, centre of energy in x ("eta") and y ("phi"),
shower width in x and y (energy-weighted standard deviation), centre and width in r, and sparsity
(the challenge's definition: fraction of the layer's voxels at or below the threshold). Cell centres
are x = r cos(alpha), y = r sin(alpha) at the bin midpoints; like the challenge, x/y centres and
widths exist only for layers that resolve the angle (n_alpha > 1) and for rectangular grid layers,
since a single angular bin carries no x/y information, while r centres and widths exist for every
layer (a grid cell's r is its centre's distance from the axis). All sums of a layer come from one
matrix product of its cells with [1, r, r^2, x, y, x^2, y^2], so the cost is about one BLAS pass
over the shower array.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from detsim.geometry import Geometry, GridLayer, RadialLayer
from detsim.showers import CaloShowers

# Guards divisions by an empty layer exactly as the challenge does, so features of empty layers agree.
_EMPTY_GUARD = 1e-16


def resolves_xy(layer: RadialLayer | GridLayer) -> bool:
    """Whether centre/width in x and y are defined for this layer (the challenge's 'binned in alpha')."""
    return isinstance(layer, GridLayer) or layer.n_alpha > 1


@dataclass(frozen=True)
class FeatureSpec:
    """Names and units of the features of one geometry, in a fixed order."""

    name: str
    kind: str  # response | energy | centre | width | sparsity
    layer_id: int | None = None
    axis: str | None = None  # x | y | r for centres and widths

    @property
    def label(self) -> str:
        where = f" layer {self.layer_id}" if self.layer_id is not None else ""
        text = {
            "response": r"$E_{tot}/E_{inc}$",
            "energy": "E [MeV]",
            "centre": f"centre of energy in {self.axis} [mm]",
            "width": f"width in {self.axis} [mm]",
            "sparsity": "sparsity",
            "voxel": "voxel energy [MeV]",
        }[self.kind]
        return f"{text}{where}"


class ShowerFeatures:
    """Computes the CaloChallenge high-level features of a geometry (weights built once)."""

    def __init__(self, geometry: Geometry, threshold_mev: float = 0.0):
        self.geometry = geometry
        self.threshold_mev = float(threshold_mev)

    @cached_property
    def xy_positions(self) -> np.ndarray:
        """Positions (in the layer list) of the layers with x/y features."""
        return np.array([i for i, layer in enumerate(self.geometry.layers) if resolves_xy(layer)], dtype=int)

    @cached_property
    def _layer_weights(self) -> list[np.ndarray]:
        """Per layer, the (n_cells, k) weights whose product with the cell energies gives its sums:
        [1, r, r^2] for layers without x/y features, [1, r, r^2, x, y, x^2, y^2] for the others."""
        x, y = self._cell_xy()
        r = np.concatenate([layer.cell_centres_polar()[0] for layer in self.geometry.layers])
        weights = []
        for position, layer_slice in enumerate(self.geometry.layer_slices):
            xs, ys, rs = x[layer_slice], y[layer_slice], r[layer_slice]
            cols = [np.ones_like(xs), rs, rs**2]
            if position in set(self.xy_positions.tolist()):
                cols += [xs, ys, xs**2, ys**2]
            weights.append(np.stack(cols, axis=1))
        return weights

    def _cell_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell centres as the challenge uses them: r cos(alpha), r sin(alpha) at bin midpoints."""
        parts_x, parts_y = [], []
        for layer in self.geometry.layers:
            if isinstance(layer, RadialLayer):
                r, alpha = layer.cell_centres_polar()
                parts_x.append(r * np.cos(alpha))
                parts_y.append(r * np.sin(alpha))
            else:
                x, y = layer.cell_centres_xy()
                parts_x.append(x)
                parts_y.append(y)
        return np.concatenate(parts_x), np.concatenate(parts_y)

    @cached_property
    def specs(self) -> list[FeatureSpec]:
        layers = self.geometry.layers
        out = [FeatureSpec("etot_einc", "response")]
        out += [FeatureSpec(f"e_layer_{layer.id}", "energy", layer.id) for layer in layers]
        for kind in ("centre", "width"):
            for axis in ("x", "y"):
                out += [
                    FeatureSpec(f"{kind}_{axis}_{layers[p].id}", kind, layers[p].id, axis) for p in self.xy_positions
                ]
        out += [FeatureSpec(f"sparsity_{layer.id}", "sparsity", layer.id) for layer in layers]
        for kind in ("centre", "width"):
            out += [FeatureSpec(f"{kind}_r_{layer.id}", kind, layer.id, "r") for layer in layers]
        return out

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def __call__(self, showers: CaloShowers) -> dict[str, np.ndarray]:
        """Feature name -> (N,) float64 array, in `names` order."""
        matrix = self.compute_matrix(showers)
        return {name: matrix[:, i] for i, name in enumerate(self.names)}

    def compute_matrix(self, showers: CaloShowers, chunk_rows: int = 512) -> np.ndarray:
        """All features as one (N, n_features) float64 array (column order = `names`).

        Per layer, one float64 matrix product with [1, r, r^2, x, y, x^2, y^2] gives all sums (float64 as
        the challenge's pipeline, so the <x^2> - <x>^2 width keeps its precision); row chunks bound
        the float64 copies, and the cost is one pass over the voxels whatever the number of layers.
        """
        e_inc = showers.incident_energy.astype(np.float64)
        parts = [
            self._chunk_features(showers.showers[i : i + chunk_rows])
            for i in range(0, len(showers), chunk_rows)
        ]
        out = np.concatenate(parts, axis=0) if parts else np.zeros((0, len(self.specs)))
        out[:, 0] /= e_inc
        return out

    def _chunk_features(self, e: np.ndarray) -> np.ndarray:
        g = self.geometry
        n = len(e)
        layer_e = np.empty((n, g.n_layers))
        hits = np.empty((n, g.n_layers))
        moments = np.empty((n, 4, len(self.xy_positions)))
        radial = np.empty((n, 2, g.n_layers))
        k = 0
        for position, (layer_slice, w) in enumerate(zip(g.layer_slices, self._layer_weights)):
            cells = e[:, layer_slice]
            sums = cells.astype(np.float64) @ w  # one BLAS pass: E, sum E r, sum E r^2 (, x, y, x^2, y^2)
            layer_e[:, position] = sums[:, 0]
            radial[:, :, position] = sums[:, 1:3]
            hits[:, position] = np.count_nonzero(cells > self.threshold_mev, axis=1)
            if w.shape[1] > 3:
                moments[:, :, k] = sums[:, 3:]
                k += 1
        sparsity = 1.0 - hits / np.diff(g.layer_offsets)
        denom = layer_e[:, self.xy_positions] + _EMPTY_GUARD
        mean_x, mean_y = moments[:, 0] / denom, moments[:, 1] / denom
        width_x = np.sqrt(np.clip(moments[:, 2] / denom - mean_x**2, 0.0, None))
        width_y = np.sqrt(np.clip(moments[:, 3] / denom - mean_y**2, 0.0, None))
        mean_r = radial[:, 0] / (layer_e + _EMPTY_GUARD)
        width_r = np.sqrt(np.clip(radial[:, 1] / (layer_e + _EMPTY_GUARD) - mean_r**2, 0.0, None))
        e_tot = layer_e.sum(axis=1, keepdims=True)  # divided by E_inc by the caller
        return np.concatenate([e_tot, layer_e, mean_x, mean_y, width_x, width_y, sparsity, mean_r, width_r], axis=1)


def high_level_inputs(
    showers: CaloShowers, features: ShowerFeatures, values: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Classifier inputs from the features (`values` if already computed), the inputs of the challenge's
    high-level classifier: log10 E_inc, log10(E_layer + 1e-8 MeV), log10(E_tot + 1e-8 MeV), sparsities,
    and centres and widths (x, y and r) in units of 100 mm. Each enters as it is: the classifier is
    fed no standardisation (conf/eval/classifier/mlp.yaml), so these scales are part of the test."""
    f = features(showers) if values is None else values
    e_inc = showers.incident_energy.astype(np.float64)
    cols = [np.log10(e_inc)]
    cols += [np.log10(f[s.name] + 1e-8) for s in features.specs if s.kind == "energy"]
    cols += [np.log10(f["etot_einc"] * e_inc + 1e-8)]
    cols += [f[s.name] for s in features.specs if s.kind == "sparsity"]
    cols += [f[s.name] / 100.0 for s in features.specs if s.kind in ("centre", "width")]
    return np.stack(cols, axis=1).astype(np.float32)


def low_level_inputs(showers: CaloShowers, voxel_scale: float = 100.0) -> np.ndarray:
    """Classifier inputs from the voxels: log10 E_inc, then voxel energies / E_inc * `voxel_scale`.

    The challenge's low-level classifier takes the plain fractions (`voxel_scale` 1, set in
    conf/eval/classifier/mlp.yaml); the particle-ID networks and the CNN use 100, which puts typical
    voxel fractions near unit scale."""
    e_inc = showers.incident_energy.astype(np.float32)[:, None]
    return np.concatenate([np.log10(e_inc), showers.showers / e_inc * np.float32(voxel_scale)], axis=1)
