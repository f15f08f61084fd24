"""The readout threshold: a voxel below it is recorded as empty.

Every room speaks of it: the simulators cut their showers at their detector's threshold, the evaluation reads
both samples through one before judging them (as the CaloChallenge's evaluation does), the VAE's generators cut
at the threshold measured in their training file. Ground-floor vocabulary, so none of them imports another's room.
"""

from __future__ import annotations

import numpy as np

from detsim.showers import CaloShowers


def apply_threshold(showers: np.ndarray, threshold_mev: float) -> np.ndarray:
    """Zero every voxel below the readout threshold (in place); returns the array."""
    if threshold_mev > 0:
        showers[showers < threshold_mev] = 0.0
    return showers


def above_threshold(showers: CaloShowers, threshold_mev: float) -> CaloShowers:
    """A copy of `showers` with every voxel below `threshold_mev` zeroed (the input is left as it is; with no
    threshold, the input itself)."""
    if threshold_mev <= 0:
        return showers
    return CaloShowers(showers.incident_energy, apply_threshold(showers.showers.copy(), threshold_mev))
