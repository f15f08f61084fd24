"""`ShowerGenerator`: everything generation needs as one plain module, incident energies (MeV) -> showers (MeV).

It holds the decoder (trunk + voxel head), the latent prior, the energy condition, the readout threshold,
the optional energy rescaling, the voxel map, the energy map and the voxel bound; `generation.py` runs it. This is what `detsim-generate`
runs, what `detsim-export` traces and what is logged to MLflow as the model.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.models.vae import generation
from detsim.models.vae.energy_map import EnergyMap, NoEnergyMap
from detsim.models.vae.layers import ShowerDecoder
from detsim.models.vae.prior import LatentPrior
from detsim.models.vae.transforms import EnergyCondition
from detsim.models.vae.voxel_map import IdentityVoxelMap, VoxelMap

# none: keep sampled energies | total / layers: rescale each sampled shower (each layer) to the decoder's mean
CALIBRATIONS = ("none", "total", "layers")


class ShowerGenerator(nn.Module):
    """Incident energies (N,) MeV -> showers (N, V) MeV, >= 0 and zero below the readout threshold."""

    def __init__(self, decoder: ShowerDecoder, prior: LatentPrior, condition: EnergyCondition,
                 threshold_mev: float, calibration: str, layer_bounds: Sequence[tuple[int, int]],
                 voxel_map: VoxelMap | None = None, energy_map: EnergyMap | None = None,
                 max_voxel_fraction: float = 1.0):
        super().__init__()
        if not max_voxel_fraction > 0:
            raise ConfigError(f"model.max_voxel_fraction: expected > 0, found {max_voxel_fraction}")
        if calibration not in CALIBRATIONS:
            raise ConfigError(f"model.calibration: expected one of {CALIBRATIONS}, found {calibration!r}")
        self.decoder, self.prior, self.condition = decoder, prior, condition
        self.threshold_mev = float(threshold_mev)
        self.calibration = calibration
        self.layer_bounds = [tuple(b) for b in layer_bounds]
        self.n_voxels = int(layer_bounds[-1][1])
        self.voxel_map = voxel_map if voxel_map is not None else IdentityVoxelMap(self.n_voxels)
        self.energy_map = energy_map if energy_map is not None else NoEnergyMap(self.layer_bounds)
        #: log of the largest E_voxel / E_inc a generated voxel may have (a bound, not a fit: energy conservation)
        self.log_max_voxel_fraction = math.log(max_voxel_fraction)
        #: where the per-voxel uniforms come from (`uniforms.RANDOM_STREAMS`): a run setting, not a weight
        self.random_stream = "pcg64"

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    def forward(self, incident_energy: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Showers (N, V) MeV, drawing every random number from `generator` (see `generation.generate`)."""
        return generation.generate(self, incident_energy, generator)

    def draw(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The random numbers `forward` would draw for `n` showers, by name, in the generator's stream order."""
        return generation.draw(self, n, generator)

    def from_draws(self, incident_energy: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """Showers from given random numbers (`draw`'s names): what an exported graph computes."""
        return generation.generate_from_draws(self, incident_energy, draws)
