"""Checks every reader applies to each chunk, so bad data fail loudly instead of training silently.

Thresholds come from `conf/data/validation` via `ValidationRules`; the defaults below match it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from detsim.errors import DataFileError


@dataclass(frozen=True)
class ValidationRules:
    """What a valid shower chunk looks like.

    negative_tolerance_mev: voxels may dip this far below zero (electronic noise) before it is an error.
    min_median_incident_mev: a median incident energy below this looks like GeV written where MeV belongs.
    max_median_response: median E_deposited/E_inc above this means the two arrays use different units.
    """

    negative_tolerance_mev: float = 1e-3
    min_median_incident_mev: float = 100.0
    max_median_response: float = 20.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "ValidationRules":
        return cls(**dict(cfg)) if cfg else cls()


def _check_finite(path: str | Path, key: str, values: np.ndarray, probe: np.ndarray, first_entry: int) -> None:
    """NaN/Inf in `values` is an error; `probe` (the values or their row sums) is checked first, the exact
    element-wise search runs only when it is not finite."""
    if np.isfinite(probe).all():
        return
    bad = ~np.isfinite(values)
    if bad.any():
        row = first_entry + int(np.argwhere(bad)[0][0])
        raise DataFileError(path, key, "finite values", f"{int(bad.sum())} NaN/Inf values (first in entry {row})")


def _check_positive(path: str | Path, key: str, incident_energy: np.ndarray, first_entry: int) -> None:
    if incident_energy.size and incident_energy.min() <= 0:
        row = first_entry + int(np.argmin(incident_energy))
        raise DataFileError(path, key, "positive incident energies", f"{incident_energy.min():g} at entry {row}")


def _check_mev(path: str | Path, key: str, incident_energy: np.ndarray, rules: ValidationRules) -> None:
    median_e = float(np.median(incident_energy))
    if median_e < rules.min_median_incident_mev:
        raise DataFileError(
            path,
            key,
            f"incident energies in MeV (median >= {rules.min_median_incident_mev:g})",
            f"median {median_e:g}: looks like GeV; convert to MeV",
        )


def check_incident_energies(
    path: str | Path, incident_energy: np.ndarray, key: str, rules: ValidationRules = ValidationRules(),
    first_entry: int = 0,
) -> None:
    """The incident-energy checks of `check_shower_chunk` alone (finite, positive, MeV), for an energies-only read."""
    _check_finite(path, key, incident_energy, incident_energy, first_entry)
    _check_positive(path, key, incident_energy, first_entry)
    if incident_energy.size:
        _check_mev(path, key, incident_energy, rules)


def check_shower_chunk(
    path: str | Path,
    incident_energy: np.ndarray,
    showers: np.ndarray,
    n_voxels: int | None,
    keys: tuple[str, str],
    rules: ValidationRules = ValidationRules(),
    first_entry: int = 0,
) -> None:
    """Raise DataFileError naming the file and key when a chunk breaks the data contract."""
    e_key, s_key = keys
    if showers.ndim != 2:
        raise DataFileError(path, s_key, "a 2-d array (N, n_voxels)", f"shape {showers.shape}")
    if n_voxels is not None and showers.shape[1] != n_voxels:
        raise DataFileError(
            path, s_key, f"{n_voxels} voxels per shower (the geometry)", f"{showers.shape[1]} (shape {showers.shape})"
        )
    if incident_energy.shape[0] != showers.shape[0]:
        raise DataFileError(
            path, e_key, f"one incident energy per shower ({showers.shape[0]})", f"{incident_energy.shape[0]}"
        )
    # One pass over the voxels gives the row sums (needed below); NaN/Inf anywhere makes a sum non-finite,
    # and only then is the exact, slower element-wise check run.
    row_sums = showers.sum(axis=1)
    _check_finite(path, e_key, incident_energy, incident_energy, first_entry)
    _check_finite(path, s_key, showers, row_sums, first_entry)
    _check_positive(path, e_key, incident_energy, first_entry)
    if showers.size and showers.min() < -rules.negative_tolerance_mev:
        row = first_entry + int(np.unravel_index(np.argmin(showers), showers.shape)[0])
        raise DataFileError(
            path,
            s_key,
            f"voxel energies >= -{rules.negative_tolerance_mev:g} MeV",
            f"{showers.min():g} MeV at entry {row}",
        )
    if incident_energy.size:
        _check_mev(path, e_key, incident_energy, rules)
        response = float(np.median(row_sums / incident_energy))
        if response > rules.max_median_response:
            raise DataFileError(
                path,
                s_key,
                f"deposited energy in the units of {e_key} (median ratio <= {rules.max_median_response:g})",
                f"median deposited/incident {response:g}: incident energy looks like GeV while voxels are MeV",
            )
