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


_LEGACY_CLAMP = 50.0  # the pre-issue-16 Weibull (tail_z=None): e^z with z clamped here


def weibull_cum_hazard(z: torch.Tensor, tail_z: float | None) -> torch.Tensor:
    """Cumulative hazard H(z) = -log P(Z > z) of the head's log-energy, z = (log x - loc) / scale.

    A Weibull has H = e^z: in log space a Gumbel-min, whose upper tail falls double-exponentially. Beyond
    `tail_z` H continues as the parabola with the same value and slope, e^z0 (1 + t + t^2 / 2), t = z - z0:
    the distribution changes only where the Weibull holds exp(-e^z0) of its mass (2e-9 at z0 = 3), but a
    voxel far above the predicted scale (a Geant4 hot voxel) now costs a polynomial instead of e^z, and
    nothing overflows. (With H = e^z such a voxel's gradient grows as e^z / scale: on Geant4 showers that
    drove the width to its floor and the loss to 1e21, then to NaN; see docs/vae.md.)
    tail_z=None is the plain Weibull as heads before issue 16 sampled it (z clamped at 50), kept so their
    checkpoints generate unchanged.
    """
    if tail_z is None:
        return z.clamp(max=_LEGACY_CLAMP).exp()
    t = (z - tail_z).clamp_min(0.0)
    return z.clamp(max=tail_z).exp() + math.exp(tail_z) * t * (1.0 + 0.5 * t)


def weibull_inverse_cum_hazard(h: torch.Tensor, tail_z: float | None) -> torch.Tensor:
    """z with `weibull_cum_hazard(z) == h` (h > 0): the sampler's inverse CDF, closed form on both pieces."""
    if tail_z is None:
        return h.log()
    return h.log().clamp(max=tail_z) + ((2.0 * h * math.exp(-tail_z) - 1.0).clamp_min(1.0).sqrt() - 1.0)


def truncated_weibull_nll(
    y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, lower: torch.Tensor | None, mask: torch.Tensor,
    tail_z: float | None = 3.0,
) -> torch.Tensor:
    """NLL of y = log x, x ~ Weibull(shape 1/s, scale e^loc) truncated below at e^lower, s = e^log_scale.

    In log space a Weibull is a (left-skewed) Gumbel-min: a sharp upper edge and a long tail to low
    energies, like the log of the Gamma-distributed voxel energies of a sampling calorimeter, where a
    symmetric log-normal over-produces very hot voxels. Truncation and sampling stay closed-form.
    The upper tail beyond `tail_z` is `weibull_cum_hazard`'s. NLL = log s - log H'(z) + H(z) - H(z_lower),
    the difference taken without cancellation (e^a - e^b = e^b expm1(a - b)) and without clamps, whose
    flat regions once made the term a constant log s - 50 far below threshold (a spurious optimum).
    tail_z=None: the pre-issue-16 term (clamped plain Weibull), for the heads of older checkpoints.
    """
    if tail_z is None:
        return _legacy_weibull_nll(y, loc, log_scale, lower, mask)
    scale = log_scale.exp()
    z = (y - loc) / scale
    zc, t = z.clamp(max=tail_z), (z - tail_z).clamp_min(0.0)
    nll = log_scale - zc - torch.log1p(t)
    if lower is None:
        return ((nll + weibull_cum_hazard(z, tail_z)) * mask).sum(dim=1).mean()
    z_lo = (lower - loc) / scale
    zc_lo, t_lo = z_lo.clamp(max=tail_z), (z_lo - tail_z).clamp_min(0.0)
    # H(z) - H(z_lo) (>= 0 for y >= lower): the exponential piece as e^b expm1(a - b) where a and b are close
    # (no cancellation), as e^a - e^b where they are not (no 0 * inf); the parabola piece as a product
    d = zc - zc_lo
    exp_piece = torch.where(d > 1.0, zc.exp() - zc_lo.exp(), zc_lo.exp() * torch.expm1(d.clamp(max=1.0)))
    excess = exp_piece + math.exp(tail_z) * (t - t_lo) * (1.0 + 0.5 * (t + t_lo))
    return ((nll + excess) * mask).sum(dim=1).mean()


def _legacy_weibull_nll(y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, lower: torch.Tensor | None,
                        mask: torch.Tensor) -> torch.Tensor:
    """The Weibull term before issue 16: unstable on Geant4 showers (docs/vae.md), kept for old configs."""
    z = ((y - loc) / log_scale.exp()).clamp(max=_LEGACY_CLAMP)
    nll = log_scale - z + z.exp()
    if lower is not None:
        nll = nll - ((lower - loc) / log_scale.exp()).clamp(max=_LEGACY_CLAMP).exp()
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
