"""The calorimeter VAE, one module per job (docs/vae.md).

layers (encoder, decoder trunk) · heads (voxel heads and their samplers) · prior (latent priors) ·
voxel_map (per-voxel quantile map) · energy_map (layer energies and total) · transforms (preprocessing, energy condition) · losses ·
generator (`ShowerGenerator`, the plain generation module) · generation (its runtime) ·
module (`CaloVAE`, the LightningModule) · export (ONNX / TorchScript graphs) · compat (pre-split checkpoints).
"""

from detsim.models.vae.compat import LatentPrior
from detsim.models.vae.energy_map import EnergyMap, NoEnergyMap, QuantileEnergyMap
from detsim.models.vae.generation import BLOCK_ROWS
from detsim.models.vae.generator import CALIBRATIONS, ShowerGenerator
from detsim.models.vae.heads import (HurdleHead, LogNormalHurdleHead, SigmoidHead, VoxelHead, WeibullHurdleHead,
                                     lower_log_fraction)
from detsim.models.vae.layers import Encoder, ShowerDecoder, mlp
from detsim.models.vae.module import CaloVAE, unpack_batch
from detsim.models.vae.prior import AggregatePrior, FittedPrior, StandardPrior
from detsim.models.vae.voxel_map import AffineVoxelMap, IdentityVoxelMap, QuantileVoxelMap, VoxelMap

__all__ = [
    "AffineVoxelMap", "AggregatePrior", "BLOCK_ROWS", "CALIBRATIONS", "CaloVAE", "Encoder", "EnergyMap", "FittedPrior",
    "HurdleHead", "NoEnergyMap", "QuantileEnergyMap",
    "IdentityVoxelMap", "LatentPrior", "LogNormalHurdleHead", "QuantileVoxelMap", "ShowerDecoder", "ShowerGenerator",
    "SigmoidHead", "StandardPrior", "VoxelHead", "VoxelMap", "WeibullHurdleHead", "lower_log_fraction", "mlp",
    "unpack_batch",
]
