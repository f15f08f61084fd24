"""Loss terms of the calorimeter VAE, each a small function of tensors.

Conventions: every term is computed **per shower** (summed over voxels or latent dimensions) and
then averaged over the batch. The energy terms in particular are per-shower squared errors: a
batch-summed energy difference would let a too-hot shower cancel a too-cold one.
Energies enter as fractions of the incident energy, so the terms are O(1) at every energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from detsim.errors import ConfigError

_EPS = 1e-12


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), summed over latent dimensions, averaged over showers."""
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def mse_per_shower(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over voxels, averaged over showers."""
    return (pred - target).pow(2).sum(dim=1).mean()


def bce_per_shower(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of fractions in [0, 1], summed over voxels, averaged over showers."""
    return F.binary_cross_entropy(pred.clamp(_EPS, 1 - _EPS), target, reduction="none").sum(dim=1).mean()


def total_energy_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over showers of (sum_v pred - sum_v target)^2, voxels given as fractions of E_inc.

    A shower with the right total energy contributes exactly zero, however its energy is spread.
    """
    return (pred.sum(dim=1) - target.sum(dim=1)).pow(2).mean()


def layer_fractions(showers: torch.Tensor, slices: Sequence[slice]) -> torch.Tensor:
    """(N, n_layers) energy per layer over the shower's total (zero for an empty shower)."""
    layers = torch.stack([showers[:, s].sum(dim=1) for s in slices], dim=1)
    return layers / layers.sum(dim=1, keepdim=True).clamp_min(_EPS)


def layer_fraction_loss(pred: torch.Tensor, target: torch.Tensor, slices: Sequence[slice]) -> torch.Tensor:
    """(n_layers,) mean over showers of (f_l(pred) - f_l(target))^2, f_l = E_layer / E_total."""
    return (layer_fractions(pred, slices) - layer_fractions(target, slices)).pow(2).mean(dim=0)


def hit_bce(hit_logits: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """Hit / no-hit cross-entropy (hit = voxel above the readout threshold), per shower then mean."""
    return F.binary_cross_entropy_with_logits(hit_logits, hit, reduction="none").sum(dim=1).mean()


def truncated_normal_nll(
    y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, lower: torch.Tensor | None, mask: torch.Tensor
) -> torch.Tensor:
    """NLL of y under N(loc, scale) truncated below at `lower`, over voxels where `mask` is 1.

    Used for the log-energy of hit voxels: the readout threshold cuts the distribution, and the
    truncation keeps the model from putting probability where the data can never be.
    """
    scale = log_scale.exp()
    z = (y - loc) / scale
    nll = 0.5 * z.pow(2) + log_scale + 0.5 * math.log(2 * math.pi)
    if lower is not None:
        nll = nll + torch.special.log_ndtr(-(lower - loc) / scale)
    return (nll * mask).sum(dim=1).mean()


def truncated_weibull_nll(
    y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, lower: torch.Tensor | None, mask: torch.Tensor
) -> torch.Tensor:
    """NLL of y = log x, x ~ Weibull(shape 1/s, scale e^loc) truncated below at e^lower, s = e^log_scale.

    In log space a Weibull is a (left-skewed) Gumbel-min: a sharp upper edge and a long tail to low
    energies, like the log of the Gamma-distributed voxel energies of a sampling calorimeter, where a
    symmetric log-normal over-produces very hot voxels. Truncation and sampling stay closed-form.
    """
    z = ((y - loc) / log_scale.exp()).clamp(max=50.0)
    nll = log_scale - z + z.exp()
    if lower is not None:
        nll = nll - ((lower - loc) / log_scale.exp()).clamp(max=50.0).exp()
    return (nll * mask).sum(dim=1).mean()


@dataclass
class LossWeights:
    """Weights of the terms; `layer` is one weight per layer (a scalar is broadcast)."""

    reco: float = 1.0
    kl: float = 1.0
    etot: float = 1.0
    layer: float | Sequence[float] = 1.0
    kl_warmup_steps: int = 0
    layer_list: list[float] = field(init=False)

    def resolve(self, n_layers: int) -> "LossWeights":
        values = [float(self.layer)] * n_layers if isinstance(self.layer, (int, float)) else list(map(float, self.layer))
        if len(values) != n_layers:
            raise ConfigError(
                f"model.loss.w_layer: expected one weight per layer ({n_layers}), found {len(values)}: {values}"
            )
        self.layer_list = values
        return self

    def kl_at(self, step: int) -> float:
        """KL weight with a linear warm-up from 0 over `kl_warmup_steps` optimiser steps."""
        if self.kl_warmup_steps <= 0:
            return self.kl
        return self.kl * min(1.0, step / self.kl_warmup_steps)
