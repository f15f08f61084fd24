"""The in-memory calorimeter shower set every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CaloShowers:
    """Incident energies (N,) and voxel energies (N, n_voxels), both MeV, float32."""

    incident_energy: np.ndarray
    showers: np.ndarray

    def __post_init__(self) -> None:
        self.incident_energy = np.asarray(self.incident_energy, dtype=np.float32).reshape(-1)
        self.showers = np.asarray(self.showers, dtype=np.float32)
        if self.showers.ndim != 2 or self.showers.shape[0] != self.incident_energy.shape[0]:
            raise ValueError(
                f"CaloShowers needs showers (N, n_voxels) and incident_energy (N,); got "
                f"{self.showers.shape} and {self.incident_energy.shape}"
            )

    def __len__(self) -> int:
        return int(self.incident_energy.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.showers.shape[1])

    def __getitem__(self, index: slice | np.ndarray) -> "CaloShowers":
        return CaloShowers(self.incident_energy[index], self.showers[index])

    @staticmethod
    def concatenate(parts: list["CaloShowers"]) -> "CaloShowers":
        if not parts:
            raise ValueError("nothing to concatenate")
        return CaloShowers(
            np.concatenate([p.incident_energy for p in parts]), np.concatenate([p.showers for p in parts])
        )
