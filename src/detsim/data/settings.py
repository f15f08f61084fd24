"""Settings a shower model takes from its training data rather than from a detector config.

A Geant4 sample's smallest non-zero voxel is its per-voxel threshold divided by its sampling fraction
(15.15 keV / 0.0229 = 0.662 MeV for the Geant4 backend's Si-W, not the challenge's 15.15 keV / 0.033 =
0.459 MeV), its incident energies span whatever spectrum it was made with, and its hottest voxel fraction
depends on the granularity. A model told other numbers truncates its hit energies at the wrong place,
conditions on a range it never sees, or squeezes its inputs: so these are measured from the training rows
(one pass, chunk by chunk) by `measure_settings`, the one function that does it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from detsim.errors import ConfigError
from detsim.showers import CaloShowers


@dataclass(frozen=True)
class DataSettings:
    """What `measure_settings` finds in a set of showers (energies in MeV)."""

    threshold_mev: float   # smallest non-zero voxel: the readout threshold the data were cut at
    e_min_mev: float       # smallest incident energy
    e_max_mev: float       # largest incident energy
    voxel_scale: float     # largest E_voxel / E_inc
    n_showers: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _arrays(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """(incident energy (N,), showers (N, V)) as numpy from a CaloShowers or a datamodule batch dict."""
    if isinstance(batch, CaloShowers):
        return batch.incident_energy, batch.showers
    if isinstance(batch, Mapping) and "showers" in batch:
        e = batch.get("incident_energy", batch.get("incident_energies"))
        return np.asarray(_numpy(e)).reshape(-1), np.asarray(_numpy(batch["showers"]))
    raise ConfigError(f"measure_settings: expected CaloShowers or {{'incident_energy', 'showers'}} batches, "
                      f"found {type(batch).__name__}")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def measure_settings(batches: Iterable[Any], source: str = "training data") -> DataSettings:
    """Threshold, incident-energy range and voxel scale of showers given chunk by chunk.

    `batches`: CaloShowers chunks (`detsim.io.iter_showers`) or datamodule batches. `source` names the
    data in the error raised when there is nothing to measure.
    """
    threshold, e_min, e_max, scale, n = np.inf, np.inf, -np.inf, 0.0, 0
    for batch in batches:
        e_inc, showers = _arrays(batch)
        if len(e_inc) == 0:
            continue
        hits = showers[showers > 0]
        if hits.size:
            threshold = min(threshold, float(hits.min()))
        e_min, e_max = min(e_min, float(e_inc.min())), max(e_max, float(e_inc.max()))
        scale = max(scale, float((showers.max(axis=1).astype(np.float64) / e_inc.astype(np.float64)).max()))
        n += len(e_inc)
    if n == 0 or not np.isfinite(threshold):
        raise ConfigError(f"measure_settings: {source} holds {n} showers and no non-zero voxel; "
                          "expected showers to measure threshold, energy range and voxel scale from")
    return DataSettings(threshold_mev=threshold, e_min_mev=e_min, e_max_mev=e_max, voxel_scale=scale, n_showers=n)
