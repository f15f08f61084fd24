"""The calorimeter VAE, one module per job (docs/vae.md).

layers (encoder, decoder trunk) · heads (voxel heads and their samplers) · prior (latent priors) ·
voxel_map (per-voxel quantile map) · energy_map (layer energies and total) · transforms (preprocessing, energy
condition) · losses · module (`CaloVAE`, the LightningModule). Generation from a trained model (the
`ShowerGenerator` a CaloVAE holds, random streams, compiled and exported graphs) is `detsim.runtime`.
"""

from detsim.models.vae.energy_map import EnergyMap, NoEnergyMap, QuantileEnergyMap
from detsim.models.vae.heads import (HurdleHead, LogNormalHurdleHead, SigmoidHead, VoxelHead, WeibullHurdleHead,
                                     lower_log_fraction)
from detsim.models.vae.layers import Encoder, ShowerDecoder, mlp
from detsim.models.vae.module import CaloVAE, unpack_batch
from detsim.models.vae.prior import AggregatePrior, FittedPrior, LatentPrior, StandardPrior
from detsim.models.vae.voxel_map import AffineVoxelMap, IdentityVoxelMap, QuantileVoxelMap, VoxelMap

__all__ = [
    "AffineVoxelMap", "AggregatePrior", "CaloVAE", "Encoder", "EnergyMap", "FittedPrior", "HurdleHead",
    "IdentityVoxelMap", "LatentPrior", "LogNormalHurdleHead", "NoEnergyMap", "QuantileEnergyMap", "QuantileVoxelMap",
    "ShowerDecoder", "SigmoidHead", "StandardPrior", "VoxelHead", "VoxelMap", "WeibullHurdleHead",
    "lower_log_fraction", "mlp", "unpack_batch",
]
