"""The longitudinal layout of a detector: where each readout slice starts and ends in X0 and lambda_int.

Profiles are integrated over depth intervals, so the detector is a stack of intervals. Thick layers
are cut into thinner slices, because the radial profile widens with depth inside a layer; passive
material (layers with `id: null`, or detector layers the geometry does not read out) only absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from detsim.errors import ConfigError
from detsim.geometry import Geometry


def _layer_entries(detector: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    name = detector.get("name", "detector")
    if detector.get("layers"):
        return list(detector["layers"])
    uniform = detector.get("uniform")
    if uniform:
        body = {k: v for k, v in dict(uniform).items() if k not in ("n_layers", "layer_ids")}
        ids = uniform.get("layer_ids") or list(range(int(uniform["n_layers"])))
        return [dict(body, id=i) for i in ids]
    raise ConfigError(f"detector {name!r}: key 'layers' (or 'uniform'): expected a list of layers, found none")


@dataclass(frozen=True)
class LayerStack:
    """Readout slices (index s) and the depth boundaries of the whole stack.

    edges_x0 / edges_lambda: (K+1,) boundaries of every interval, passive ones included.
    slice_interval: (S,) which interval each readout slice is; slice_layer: (S,) its geometry position.
    slice_r_m: (S,) Moliere radius (mm) in that slice.
    """

    edges_x0: np.ndarray
    edges_lambda: np.ndarray
    slice_interval: np.ndarray
    slice_layer: np.ndarray
    slice_r_m: np.ndarray

    @property
    def n_slices(self) -> int:
        return int(self.slice_interval.size)

    @property
    def lo_x0(self) -> np.ndarray:
        return self.edges_x0[self.slice_interval]

    @property
    def hi_x0(self) -> np.ndarray:
        return self.edges_x0[self.slice_interval + 1]

    @property
    def mid_x0(self) -> np.ndarray:
        return 0.5 * (self.lo_x0 + self.hi_x0)

    @property
    def lo_lambda(self) -> np.ndarray:
        return self.edges_lambda[self.slice_interval]

    @property
    def hi_lambda(self) -> np.ndarray:
        return self.edges_lambda[self.slice_interval + 1]

    def x0_at_lambda(self, depth_lambda: np.ndarray) -> np.ndarray:
        """Convert a depth in lambda_int to X0 (piecewise linear through the layers; beyond the end: inf)."""
        out = np.interp(depth_lambda, self.edges_lambda, self.edges_x0)
        return np.where(depth_lambda >= self.edges_lambda[-1], np.inf, out)

    @classmethod
    def build(cls, geometry: Geometry, detector: Mapping[str, Any], max_slice_x0: float, max_slice_lambda: float) -> "LayerStack":
        name = detector.get("name", "detector")
        default_rm = float(detector["em"]["R_M_mm"])
        read_ids = set(geometry.layer_ids)
        x0_edges, lam_edges, intervals, layers, rms = [0.0], [0.0], [], [], []
        seen: set[int] = set()
        for entry in _layer_entries(detector):
            try:
                x0, lam = float(entry["x0"]), float(entry["lambda"])
            except KeyError as exc:
                raise ConfigError(
                    f"detector {name!r} layer {dict(entry)}: key {exc.args[0]!r}: expected a thickness, found none"
                ) from exc
            layer_id = entry.get("id")
            readout = layer_id is not None and int(layer_id) in read_ids
            n_sub = max(1, int(np.ceil(x0 / max_slice_x0 - 1e-9)), int(np.ceil(lam / max_slice_lambda - 1e-9)))
            if not readout:
                n_sub = 1
            for k in range(n_sub):
                if readout:
                    intervals.append(len(x0_edges) - 1)
                    layers.append(geometry.layer_position(int(layer_id)))
                    rms.append(float(entry.get("R_M_mm", default_rm)))
                x0_edges.append(x0_edges[-1] + x0 / n_sub)
                lam_edges.append(lam_edges[-1] + lam / n_sub)
            if readout:
                seen.add(int(layer_id))
        missing = sorted(read_ids - seen)
        if missing:
            raise ConfigError(
                f"detector {name!r}: key 'layers': expected every geometry layer {sorted(read_ids)} "
                f"of {geometry.name!r}, found no depth for layer ids {missing}"
            )
        return cls(
            np.asarray(x0_edges), np.asarray(lam_edges), np.asarray(intervals), np.asarray(layers), np.asarray(rms)
        )
