"""The per-bin statistics of the physics report (response, resolution, hit fraction, largest voxel, profiles)
and the reference's seeded bootstrap of them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detsim.eval.physics.summaries import ShowerSummaries

_MAX_BOOT_CELLS = 2_000_000  # rows x resamples gathered at once: bounds the bootstrap's memory on big bins


@dataclass
class BinRows:
    """Per-shower quantities of one sample in one energy bin, each statistic a function of rows of these."""

    response: np.ndarray  # E_tot / E_inc
    hit_fraction: np.ndarray
    max_voxel: np.ndarray  # largest voxel / E_inc
    longitudinal: np.ndarray  # (n, n_layers) E_layer / E_tot (0 for an empty shower)
    radial: np.ndarray  # (n, n_rings) E_ring / E_tot
    filled: np.ndarray  # E_tot > 0: the showers that have a profile

    @classmethod
    def of(cls, s: ShowerSummaries, mask: np.ndarray) -> "BinRows":
        e_inc, e_tot = s.incident_energy[mask], s.total_energy[mask]
        filled = e_tot > 0
        norm = np.where(filled, e_tot, 1.0)[:, None]
        return cls(e_tot / e_inc, s.n_hits[mask] / s.n_voxels, s.max_voxel[mask] / e_inc,
                   s.layer_energy[mask] / norm, s.ring_energy[mask] / norm, filled.astype(np.float64))

    def stats(self, rows: np.ndarray, quantiles: tuple[float, float]) -> dict[str, np.ndarray]:
        """Every statistic of the samples whose row indices are the rows of `rows` (k, n): arrays (k,) or (k, m)."""
        n = len(self.response)
        resp = self.response[rows]
        counts = np.bincount((np.arange(len(rows))[:, None] * n + rows).ravel(), minlength=len(rows) * n)
        weights = counts.reshape(len(rows), n) * self.filled
        norm = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        low, high = np.quantile(resp, quantiles, axis=1)
        return {
            "response_mean": resp.mean(axis=1),
            "response_median": np.median(resp, axis=1),
            "rms": resp.std(axis=1),
            "width": 0.5 * (high - low),
            "hit_fraction": self.hit_fraction[rows].mean(axis=1),
            "max_voxel": self.max_voxel[rows].max(axis=1),
            "longitudinal_profile": weights @ self.longitudinal / norm,
            "radial_profile": weights @ self.radial / norm,
        }

    def bootstrap(self, n_resamples: int, quantiles: tuple[float, float],
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The statistics of `n_resamples` resamples (with replacement, same size), in blocks that bound memory."""
        n = len(self.response)
        block = max(1, _MAX_BOOT_CELLS // max(n, 1))
        parts = [self.stats(rng.integers(0, n, (min(block, n_resamples - i), n)), quantiles)
                 for i in range(0, n_resamples, block)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
