"""The VAE's preprocessing between raw showers (MeV) and what its networks see.

The datamodule hands over raw MeV; the model owns these transforms (their numbers are part of its
config and its checkpoint), so a generator always undoes exactly what its training applied.

- `EnergyCondition`: log-scaled incident energy mapped to about [0, 1] over the configured range,
  because incident energies span five decades and a network wants O(1) inputs.
- `VoxelTransform`: voxels / (scale * E_inc) (`fraction`, the ATLAS default) or the logit of that
  normalised fraction (`logit`), which spreads the many tiny fractions over an O(1) range.
- `condition_bin`: the incident-energy bin of a condition, shared by the latent prior and the voxel map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from detsim.errors import ConfigError

VOXEL_MODES = ("fraction", "logit")


@dataclass(frozen=True)
class EnergyCondition:
    """c = (ln E - ln E_min) / (ln E_max - ln E_min); energies in MeV."""

    e_min_mev: float
    e_max_mev: float

    def __post_init__(self) -> None:
        if not 0 < self.e_min_mev < self.e_max_mev:
            raise ConfigError(
                f"condition: need 0 < e_min_mev < e_max_mev, got {self.e_min_mev} and {self.e_max_mev}"
            )

    def forward(self, incident_energy: torch.Tensor) -> torch.Tensor:
        """(N,) MeV -> (N, 1) condition."""
        lo, hi = math.log(self.e_min_mev), math.log(self.e_max_mev)
        return ((torch.log(incident_energy) - lo) / (hi - lo)).reshape(-1, 1)

    def inverse(self, condition: torch.Tensor) -> torch.Tensor:
        lo, hi = math.log(self.e_min_mev), math.log(self.e_max_mev)
        return torch.exp(condition.reshape(-1) * (hi - lo) + lo)


@dataclass(frozen=True)
class VoxelTransform:
    """Voxel energies (N, V) MeV <-> normalised network space, given the incident energies (N,).

    `scale` divides the fraction so it stays below one (a sampling calorimeter sees only part of
    E_inc; set it to the largest expected E_voxel / E_inc). `alpha` keeps the logit finite at 0 and 1.
    """

    mode: str = "fraction"
    scale: float = 1.0
    alpha: float = 1e-6

    def __post_init__(self) -> None:
        if self.mode not in VOXEL_MODES:
            raise ConfigError(f"preprocessing.voxels: expected one of {VOXEL_MODES}, found {self.mode!r}")
        if self.scale <= 0 or not 0 <= self.alpha < 0.5:
            raise ConfigError(f"preprocessing: need scale > 0 and 0 <= alpha < 0.5, got {self.scale}, {self.alpha}")

    def fraction(self, showers: torch.Tensor, incident_energy: torch.Tensor) -> torch.Tensor:
        return showers / (self.scale * incident_energy.reshape(-1, 1))

    def forward(self, showers: torch.Tensor, incident_energy: torch.Tensor) -> torch.Tensor:
        u = self.fraction(showers, incident_energy).clamp(0.0, 1.0)
        if self.mode == "fraction":
            return u
        u = self.alpha + (1.0 - 2.0 * self.alpha) * u
        return torch.log(u) - torch.log1p(-u)

    def inverse(self, x: torch.Tensor, incident_energy: torch.Tensor) -> torch.Tensor:
        if self.mode == "logit":
            x = ((torch.sigmoid(x) - self.alpha) / (1.0 - 2.0 * self.alpha)).clamp(0.0, 1.0)
        return x * (self.scale * incident_energy.reshape(-1, 1))


def condition_bin(c: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin of the log-scaled incident energy c in [0, 1]: the latent prior's and the voxel map's binning."""
    return (c.reshape(-1) * n_bins).floor().clamp(0, n_bins - 1).long()
