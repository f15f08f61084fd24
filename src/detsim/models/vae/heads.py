"""Voxel heads: the decoder's last layer, its training terms and its sampler (config group `model/vae/head`).

A head maps the decoder trunk's output to per-voxel distribution parameters (`forward` for training,
`sampling_params` for generation), scores showers under them (`reco_terms`), gives the expected fraction
E_voxel / E_inc (`mean_fraction`, used by the energy losses and the energy rescaling) and turns parameters plus
uniforms into energies (`sample`). The uniforms are an argument, not drawn inside, so eager, compiled and
exported generation and a C++ host all sample through the same code.

- `SigmoidHead`: the ATLAS reference, deterministic per-voxel fractions; a classifier tells its showers
  from simulation almost perfectly because it returns the *average* shower of a latent point (docs/vae.md).
- `HurdleHead` subclasses sample what the latent does not carry: per voxel a hit probability (Bernoulli,
  trained with cross-entropy on above/below the readout threshold) and, given a hit, an energy truncated at
  the threshold (trained by its likelihood): log-normal (`LogNormalHurdleHead`) or Weibull
  (`WeibullHurdleHead`, left-skewed in log E like the log of Gamma-distributed sampling fluctuations).

A new head is a subclass here (or anywhere under `detsim.`) plus a file in `conf/model/vae/head/`.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.models.vae import losses
from detsim.models.vae.layers import linear_bias_row
from detsim.models.vae.transforms import VoxelTransform

Params = Mapping[str, torch.Tensor]
WIDTH_BOUNDS = ("smooth", "hard")
LogMap = Callable[[torch.Tensor], torch.Tensor]


def is_hit(showers: torch.Tensor, threshold: float) -> torch.Tensor:
    """Voxels the readout keeps: non-zero and at or above the threshold (the generator zeroes x < threshold,
    and a threshold measured on data is its smallest non-zero voxel, which is itself a hit)."""
    return (showers > 0) & (showers >= threshold)


def soft_clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """x bounded to (lo, hi) smoothly: about x in between, with a gradient that never vanishes."""
    return lo + nn.functional.softplus(x - lo) - nn.functional.softplus(x - hi)


def soft_clamp_exp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """exp(soft_clamp(x, lo, hi)) in closed form, e^lo (1 + a) / (1 + a e^(lo - hi)) with a = e^(x - lo):
    one exp instead of two softplus and an exp (the sampler's width; training needs the log, `soft_clamp`).
    x is capped where the ratio has long reached e^hi, so a stays finite."""
    a = (x.clamp(max=lo + 80.0) - lo).exp()
    return (a + 1.0).div_(a.mul(math.exp(lo - hi)).add_(1.0)).mul_(math.exp(lo))


def lower_log_fraction(threshold: float, e_inc: torch.Tensor) -> torch.Tensor | None:
    """log(threshold / E_inc) per shower, (N, 1); None without a threshold."""
    if threshold <= 0:
        return None
    return math.log(threshold) - torch.log(e_inc).reshape(-1, 1)


class VoxelHead(nn.Module):
    """Base of the voxel heads. Every head is built as `Head(n_hidden, n_voxels, transform, **config)`."""

    #: uniforms the sampler needs per voxel (0: deterministic); the generator draws them
    uniforms_per_voxel: int = 0
    #: True if `sample` takes E_inc and a log-fraction map itself (the fused fast path of generation)
    fused_sampler: bool = False
    #: where the sampler truncates (the `lower` of `sample`), for generation to compute
    lower_log_fraction = staticmethod(lower_log_fraction)

    def sampling_params(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters `sample` and `mean_fraction` take, from the trunk's last hidden layer h (N, n_hidden)."""
        raise NotImplementedError

    def reco_terms(self, out: Params, showers: torch.Tensor, e_inc: torch.Tensor,
                   threshold: float) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def mean_fraction(self, out: Params) -> torch.Tensor:
        """Expected E_voxel / E_inc."""
        raise NotImplementedError

    def sample(self, out: dict[str, torch.Tensor], lower: torch.Tensor | None, uniform: torch.Tensor | None,
               e_inc: torch.Tensor | None = None, reuse: bool = False, log_map: LogMap | None = None) -> torch.Tensor:
        """Sampled E_voxel / E_inc (times `e_inc` (N, 1) where the head is fused), >= 0, from (N, V) uniforms and
        the parameters of `sampling_params`."""
        raise NotImplementedError


class SigmoidHead(VoxelHead):
    """Deterministic voxel energies: sigmoid fractions (or logits, for logit preprocessing)."""

    RECO_LOSSES = {"mse": losses.mse_per_shower, "bce": losses.bce_per_shower}

    def __init__(self, n_hidden: int, n_voxels: int, transform: VoxelTransform, reco_loss: str):
        super().__init__()
        if reco_loss not in self.RECO_LOSSES or (reco_loss == "bce" and transform.mode != "fraction"):
            raise ConfigError(f"model.head.reco_loss: expected mse, or bce with fraction voxels; found {reco_loss!r}")
        self.linear = nn.Linear(n_hidden, n_voxels)
        self.transform = transform
        self.reco_loss = reco_loss
        with torch.no_grad():  # start near "energy spread evenly" instead of half of E_inc in every voxel
            p = 1.0 / n_voxels + (transform.alpha if transform.mode == "logit" else 0.0)
            self.linear.bias.fill_(math.log(p) - math.log1p(-p))

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._params(self.linear(h))

    def sampling_params(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._params(linear_bias_row(self.linear, h))

    def _params(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": torch.sigmoid(out) if self.transform.mode == "fraction" else out}

    def reco_terms(self, out: Params, showers: torch.Tensor, e_inc: torch.Tensor,
                   threshold: float) -> dict[str, torch.Tensor]:
        return {"reco": self.RECO_LOSSES[self.reco_loss](out["x"], self.transform.forward(showers, e_inc))}

    def mean_fraction(self, out: Params) -> torch.Tensor:
        return self.transform.inverse(out["x"], torch.ones(out["x"].shape[0], device=out["x"].device))

    def sample(self, out: dict[str, torch.Tensor], lower: torch.Tensor | None, uniform: torch.Tensor | None,
               e_inc: torch.Tensor | None = None, reuse: bool = False, log_map: LogMap | None = None) -> torch.Tensor:
        return self.mean_fraction(out)


class HurdleHead(VoxelHead):
    """Per voxel: a hit probability, and E_voxel / E_inc given a hit, truncated at the readout threshold.

    The energy given a hit is parametrised by a location `loc` and a log-space width `log_scale`, kept in
    [log_scale_min, log_scale_max] by `width_bound`: smooth (the default config), or hard (a clamp, as heads
    before issue 16: zero gradient outside, so a width pushed to the floor by one batch stays there);
    subclasses give its likelihood, mean and inverse CDF.
    The parameters leave the head in float32, also under bf16 autocast: the likelihood divides log-energy
    differences by widths down to e^-5, where bf16's 8-bit mantissa would be noise.
    """

    uniforms_per_voxel = 1
    fused_sampler = True

    def __init__(self, n_hidden: int, n_voxels: int, transform: VoxelTransform | None,
                 log_scale_min: float, log_scale_max: float, width_bound: str = "hard"):
        super().__init__()
        if width_bound not in WIDTH_BOUNDS:
            raise ConfigError(f"model.head.width_bound: expected one of {WIDTH_BOUNDS}, found {width_bound!r}")
        self.linear = nn.Linear(n_hidden, 3 * n_voxels)
        self.log_scale_range = (float(log_scale_min), float(log_scale_max))
        self.width_bound = width_bound
        with torch.no_grad():  # start near "energy spread evenly": keeps the energy terms O(1) at step 0
            self.linear.bias[n_voxels : 2 * n_voxels].fill_(-math.log(n_voxels))

    # --- what a subclass defines -------------------------------------------------------------
    def nll(self, y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, lower: torch.Tensor | None,
            mask: torch.Tensor) -> torch.Tensor:
        """Truncated negative log-likelihood of log fractions y where mask is 1."""
        raise NotImplementedError

    def log_mean(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """log E[fraction | hit], ignoring the truncation."""
        raise NotImplementedError

    def log_fraction(self, loc: torch.Tensor, scale: torch.Tensor, v: torch.Tensor, lower: torch.Tensor | None,
                     scratch: torch.Tensor | None) -> torch.Tensor:
        """Inverse CDF of the truncated distribution at the uniform v (may overwrite v and `scratch`)."""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------
    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"hit": logits, "loc", "log_scale" (the likelihood's), "scale" = e^log_scale (the mean's)}."""
        hit, loc, width = self.linear(h).float().chunk(3, dim=1)
        bound = soft_clamp if self.width_bound == "smooth" else torch.clamp
        log_scale = bound(width, *self.log_scale_range)
        return {"hit": hit, "loc": loc, "log_scale": log_scale, "scale": log_scale.exp()}

    def sampling_params(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"hit": logits, "loc", "scale"}: the bias inside the matmul, the bounded width in one exp
        (`soft_clamp_exp`) where training takes the log and then its exp."""
        hit, loc, width = linear_bias_row(self.linear, h).float().chunk(3, dim=1)
        lo, hi = self.log_scale_range
        scale = soft_clamp_exp(width, lo, hi) if self.width_bound == "smooth" else width.clamp(lo, hi).exp()
        return {"hit": hit, "loc": loc, "scale": scale}

    def reco_terms(self, out: Params, showers: torch.Tensor, e_inc: torch.Tensor,
                   threshold: float) -> dict[str, torch.Tensor]:
        hit = is_hit(showers, threshold).to(showers.dtype)
        y = torch.log((showers / e_inc.reshape(-1, 1)).clamp_min(1e-30))
        lower = lower_log_fraction(threshold, e_inc)
        return {
            "hit": losses.hit_bce(out["hit"], hit),
            "hit_energy": self.nll(y, out["loc"], out["log_scale"], lower, hit),
        }

    def mean_fraction(self, out: Params) -> torch.Tensor:
        """Expected E_voxel / E_inc (ignoring the truncation, a small correction above threshold)."""
        return torch.sigmoid(out["hit"]) * torch.exp(self.log_mean(out["loc"], out["scale"]))

    def sample(self, out: dict[str, torch.Tensor], lower: torch.Tensor | None, uniform: torch.Tensor | None,
               e_inc: torch.Tensor | None = None, reuse: bool = False, log_map: LogMap | None = None) -> torch.Tensor:
        """One uniform u per voxel: hit if u < p, and then u / p is a fresh uniform for the energy.

        The energy is drawn by inverse CDF of the distribution truncated at `lower` (exact, and half the
        random numbers of separate hit and energy draws: generation speed is a requirement).
        reuse=True lets the draw overwrite `out` and `uniform` (the generator's fast path, ~20 passes over
        N x V floats, so every saved allocation counts); the result then lives in `uniform`'s memory.
        The hit mask is kept as floats and multiplied by E_inc first: exp(y) * (hit * E) == (exp(y) * hit) * E
        exactly, in one pass. `log_map`, if given, maps the sampled log fractions before exponentiation
        (the voxel map, without a log/exp round trip).
        """
        if uniform is None:
            raise ConfigError("HurdleHead.sample: needs one uniform per voxel, found none")
        loc, scale = out["loc"], out["scale"]
        p = out["hit"].sigmoid_() if reuse else torch.sigmoid(out["hit"])
        if reuse:  # float 0/1 (a bool mask is 4x slower to make and use)
            hit = torch.lt(uniform, p, out=torch.empty_like(uniform))
            if e_inc is not None:
                hit.mul_(e_inc)
            v = uniform.div_(p)
        else:
            hit = torch.lt(uniform, p).to(uniform.dtype)
            if e_inc is not None:
                hit = hit * e_inc
            v = uniform / p
        y = self.log_fraction(loc, scale, v.clamp_(1e-7, 1.0 - 1e-7), lower, p if reuse else None)
        # y >= lower holds by construction (up to rounding, which the generator's threshold cut absorbs)
        if log_map is not None:
            y = log_map(y)
        return y.exp_().mul_(hit)


class LogNormalHurdleHead(HurdleHead):
    """Given a hit, log(E_voxel / E_inc) ~ Normal(loc, scale) truncated below at log(threshold / E_inc)."""

    def nll(self, y, loc, log_scale, lower, mask):
        return losses.truncated_normal_nll(y, loc, log_scale, lower, mask)

    def log_mean(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return loc + 0.5 * scale * scale

    def log_fraction(self, loc, scale, v, lower, scratch):
        if lower is not None:
            p_lo = torch.special.ndtr((lower - loc) / scale)
            v = torch.lerp(p_lo, torch.ones_like(p_lo), v).clamp_(1e-7, 1.0 - 1e-7)
        return torch.addcmul(loc, scale, torch.special.ndtri(v))


class WeibullHurdleHead(HurdleHead):
    """Given a hit, E_voxel / E_inc ~ Weibull(shape 1/scale, scale e^loc) truncated below at threshold / E_inc.

    Beyond `tail_z` (z = (log x - loc) / scale) the upper tail is a parabola in the cumulative hazard, not
    the Weibull's e^z (`losses.weibull_cum_hazard`: 2e-9 of the mass at 3, but finite, polynomial gradients
    for hot voxels). Inverse CDF in closed form: H(z) = H(z_threshold) - log v. `tail_z=None` is the plain
    Weibull of the heads before issue 16 (the class default, so their checkpoints generate unchanged).
    """

    def __init__(self, n_hidden: int, n_voxels: int, transform: VoxelTransform | None,
                 log_scale_min: float, log_scale_max: float, width_bound: str = "hard",
                 tail_z: float | None = None):
        super().__init__(n_hidden, n_voxels, transform, log_scale_min, log_scale_max, width_bound)
        self.tail_z = None if tail_z is None else float(tail_z)

    def nll(self, y, loc, log_scale, lower, mask):
        return losses.truncated_weibull_nll(y, loc, log_scale, lower, mask, self.tail_z)

    def log_mean(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return loc + torch.lgamma(1.0 + scale)

    def log_fraction(self, loc, scale, v, lower, scratch):
        h = v.log_().neg_()
        if lower is not None:
            h = h.add_(losses.weibull_cum_hazard(torch.sub(lower, loc, out=scratch).div_(scale), self.tail_z))
        z = losses.weibull_inverse_cum_hazard(h, self.tail_z)
        return torch.addcmul(loc, scale, z, out=h if scratch is not None else None)
