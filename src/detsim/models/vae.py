"""Conditional VAE for calorimeter showers (after ATLAS ATL-SOFT-PUB-2018-001), as plain modules
plus the LightningModule `CaloVAE`.

The encoder sees the preprocessed voxels and the log-scaled incident energy; the decoder sees the
latent point and the same condition. Two voxel heads exist (config `decoder.output`):

- `sigmoid`: the ATLAS reference. A deterministic per-voxel energy fraction; a classifier tells its
  showers from simulation almost perfectly because the decoder returns the *average* shower of a
  latent point (see docs/vae.md).
- `hurdle`: the decoder *samples* what the latent does not carry. Each voxel gets a hit probability
  (Bernoulli, trained with cross-entropy on above/below the readout threshold) and, given a hit, a
  log-normal energy truncated at the threshold (trained by its likelihood).

Generation draws z from the prior (standard normal, a Gaussian per incident-energy bin fitted to
the aggregate posterior, or that aggregate posterior itself: the validation showers' posteriors of the
row's bin, `prior.kind: aggregate`), decodes, samples, and applies the readout threshold; outputs are >= 0.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn

from detsim.config import to_plain
from detsim.data.transforms import EnergyCondition, VoxelTransform
from detsim.errors import ConfigError
from detsim.geometry import Geometry, load_geometry
from detsim.models import losses
from detsim.models.marginals import MarginalCalibration, condition_bin

HEADS = ("sigmoid", "hurdle")
PRIORS = ("standard", "fitted", "aggregate")
CALIBRATIONS = ("none", "total", "layers")
# Rows decoded and sampled at a time in generation: the block's head output (rows x 3 x V floats,
# 9 MB for ds1 at 2048) and temporaries stay in L2/L3 across the ~20 elementwise passes instead of
# streaming N x V arrays through memory each time. Rows are independent and the uniforms come block
# after block from one stream, so on one thread the numbers equal the whole-batch ones bit for bit as
# long as blocks start at multiples of 256 rows (the matmul kernel's row panels stay aligned; other
# offsets move roundings in ~1e-4 of the voxels). 2048 was fastest on one thread. With several
# threads every op is a parallel region whose barrier, on a shared machine, waits for a descheduled
# thread: there the whole batch is one block (measured: 2048-row blocks 4x slower on 2 busy cores).
BLOCK_ROWS = 2048


def _activation(name: str) -> nn.Module:
    try:
        return getattr(nn, name)()
    except AttributeError as exc:
        raise ConfigError(f"model activation: expected a torch.nn class name (ELU, ReLU, ...), found {name!r}") from exc


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, each followed by the activation."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), _activation(activation)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z | x, c): preprocessed voxels and condition -> (mu, logvar)."""

    def __init__(self, n_voxels: int, hidden: Sequence[int], latent_dim: int, activation: str, input_norm: bool):
        super().__init__()
        # Standardising the inputs matters for logit inputs (values near -14 for empty voxels).
        self.norm = nn.BatchNorm1d(n_voxels, affine=False) if input_norm else nn.Identity()
        self.body = mlp([n_voxels + 1, *hidden], activation)
        self.head = nn.Linear(hidden[-1], 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(torch.cat([self.norm(x), c], dim=1))).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)


class SigmoidHead(nn.Module):
    """Deterministic voxel energies: sigmoid fractions (or logits, for logit preprocessing)."""

    def __init__(self, n_hidden: int, n_voxels: int, transform: VoxelTransform, reco_loss: str):
        super().__init__()
        if reco_loss not in ("mse", "bce") or (reco_loss == "bce" and transform.mode != "fraction"):
            raise ConfigError(f"model.decoder.reco_loss: expected mse, or bce with fraction voxels; found {reco_loss!r}")
        self.linear = nn.Linear(n_hidden, n_voxels)
        self.transform = transform
        self.reco_loss = reco_loss
        with torch.no_grad():  # start near "energy spread evenly" instead of half of E_inc in every voxel
            p = 1.0 / n_voxels + (transform.alpha if transform.mode == "logit" else 0.0)
            self.linear.bias.fill_(math.log(p) - math.log1p(-p))

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.linear(h)
        return {"x": torch.sigmoid(out) if self.transform.mode == "fraction" else out}

    def reco_terms(self, out: Mapping[str, torch.Tensor], showers: torch.Tensor, e_inc: torch.Tensor,
                   threshold: float) -> dict[str, torch.Tensor]:
        target = self.transform.forward(showers, e_inc)
        fn = losses.mse_per_shower if self.reco_loss == "mse" else losses.bce_per_shower
        return {"reco": fn(out["x"], target)}

    def mean_fraction(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected E_voxel / E_inc."""
        return self.transform.inverse(out["x"], torch.ones(out["x"].shape[0], device=out["x"].device))

    def sample_fraction(self, out: Mapping[str, torch.Tensor], lower: torch.Tensor | None,
                        generator: torch.Generator | None) -> torch.Tensor:
        return self.mean_fraction(out)


class HurdleHead(nn.Module):
    """Per voxel: a hit probability, and E_voxel / E_inc given a hit, truncated at the readout threshold.

    `energy` picks the distribution given a hit: `lognormal` (log-energy normal) or `weibull` (log-energy
    Gumbel-min, left-skewed like the log of Gamma-distributed sampling fluctuations). Both are
    parametrised by a location `loc` and a log-space width `log_scale` and have closed-form sampling.
    """

    ENERGIES = ("lognormal", "weibull")

    def __init__(self, n_hidden: int, n_voxels: int, log_scale_min: float, log_scale_max: float,
                 energy: str = "lognormal"):
        super().__init__()
        if energy not in self.ENERGIES:
            raise ConfigError(f"model.decoder.energy: expected one of {self.ENERGIES}, found {energy!r}")
        self.energy = energy
        self.linear = nn.Linear(n_hidden, 3 * n_voxels)
        self.log_scale_range = (log_scale_min, log_scale_max)
        with torch.no_grad():  # start near "energy spread evenly": keeps the energy terms O(1) at step 0
            self.linear.bias[n_voxels : 2 * n_voxels].fill_(-math.log(n_voxels))

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        hit, loc, log_scale = self.linear(h).chunk(3, dim=1)
        return {"hit": hit, "loc": loc, "log_scale": log_scale.clamp(*self.log_scale_range)}

    def reco_terms(self, out: Mapping[str, torch.Tensor], showers: torch.Tensor, e_inc: torch.Tensor,
                   threshold: float) -> dict[str, torch.Tensor]:
        hit = (showers > threshold).to(showers.dtype)
        y = torch.log((showers / e_inc.reshape(-1, 1)).clamp_min(1e-30))
        lower = lower_log_fraction(threshold, e_inc)
        nll = losses.truncated_normal_nll if self.energy == "lognormal" else losses.truncated_weibull_nll
        return {
            "hit": losses.hit_bce(out["hit"], hit),
            "hit_energy": nll(y, out["loc"], out["log_scale"], lower, hit),
        }

    def mean_fraction(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected E_voxel / E_inc (ignoring the truncation, a small correction above threshold)."""
        scale = out["log_scale"].exp()
        if self.energy == "lognormal":
            log_mean = out["loc"] + 0.5 * scale * scale
        else:
            log_mean = out["loc"] + torch.lgamma(1.0 + scale)
        return torch.sigmoid(out["hit"]) * torch.exp(log_mean)

    def sample_fraction(self, out: Mapping[str, torch.Tensor], lower: torch.Tensor | None,
                        generator: torch.Generator | None) -> torch.Tensor:
        """One uniform u per voxel: hit if u < p, and then u / p is a fresh uniform for the energy.

        The energy is drawn by inverse CDF of the distribution truncated at `lower` (exact, and half
        the random numbers of separate hit and energy draws: generation speed is a requirement).
        """
        return self.sample_energy(out, lower, generator)

    def sample_energy(self, out: dict[str, torch.Tensor], lower: torch.Tensor | None,
                      generator: torch.Generator | None, e_inc: torch.Tensor | None = None,
                      reuse: bool = False, out_buffer: torch.Tensor | None = None,
                      log_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """`sample_fraction` x `e_inc` ((N, 1); None: 1), with the same random numbers and roundings.

        reuse=True lets the draw overwrite the tensors of `out` (the generator's fast path, ~20 passes
        over N x V floats, so every saved allocation and pass counts). The hit mask is kept as floats
        and multiplied by E_inc first: exp(y) * (hit * E) == (exp(y) * hit) * E exactly, in one pass
        instead of a bool->float conversion and two multiplications. `out_buffer` (N, V), if given,
        receives the result (no copy into the caller's output array). `log_map`, if given, maps the
        sampled log fractions before exponentiation (the marginal calibration, without a log/exp round trip).
        """
        loc = out["loc"]
        p = out["hit"].sigmoid_() if reuse else torch.sigmoid(out["hit"])
        scale = out["log_scale"].exp_() if reuse else out["log_scale"].exp()
        if out_buffer is None:
            u = torch.rand(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
        else:
            u = torch.rand(loc.shape, generator=generator, out=out_buffer)
        hit = torch.lt(u, p, out=torch.empty_like(u))  # float 0/1 (a bool mask is 4x slower to make and use)
        if e_inc is not None:
            hit.mul_(e_inc)
        v = u.div_(p).clamp_(1e-7, 1.0 - 1e-7)
        if self.energy == "weibull":  # (x / lambda)^k = (t / lambda)^k - log v
            g = v.log_().neg_()
            if lower is not None:
                g = g.add_(torch.sub(lower, loc, out=p if reuse else None).div_(scale).clamp_(max=50.0).exp_())
            y = torch.addcmul(loc, scale, g.log_(), out=g if reuse else None)
        else:
            if lower is not None:
                p_lo = torch.special.ndtr((lower - loc) / scale)
                v = torch.lerp(p_lo, torch.ones_like(p_lo), v).clamp_(1e-7, 1.0 - 1e-7)
            y = torch.addcmul(loc, scale, torch.special.ndtri(v))
        # y >= lower holds by construction (up to rounding, which the generator's threshold cut absorbs)
        if log_map is not None:
            y = log_map(y)
        return y.exp_().mul_(hit)


def lower_log_fraction(threshold: float, e_inc: torch.Tensor) -> torch.Tensor | None:
    """log(threshold / E_inc) per shower, (N, 1); None without a threshold."""
    if threshold <= 0:
        return None
    return math.log(threshold) - torch.log(e_inc).reshape(-1, 1)


class ShowerDecoder(nn.Module):
    """p(x | z, c): MLP trunk plus a voxel head."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], activation: str, head: nn.Module):
        super().__init__()
        self.trunk = mlp([latent_dim + 1, *hidden], activation)
        self.head = head

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.trunk(torch.cat([z, c], dim=1)))


class LatentPrior(nn.Module):
    """Where generation draws z: N(0, I), or per condition bin a Gaussian fitted to posterior samples.

    A VAE's aggregate posterior rarely fills N(0, I); sampling where the decoder was trained (the
    `fitted` option) avoids decoding latent points it never saw.
    """

    def __init__(self, latent_dim: int, kind: str = "standard", n_bins: int = 1, min_count: int = 50,
                 bank_size: int = 10000):
        super().__init__()
        if kind not in PRIORS:
            raise ConfigError(f"model.prior.kind: expected one of {PRIORS}, found {kind!r}")
        self.kind, self.n_bins, self.min_count = kind, int(n_bins), int(min_count)
        self.register_buffer("loc", torch.zeros(self.n_bins, latent_dim))
        self.register_buffer("chol", torch.eye(latent_dim).repeat(self.n_bins, 1, 1))
        # `aggregate`: the validation posteriors N(mu_i, sigma_i), sorted by bin; generation picks a
        # random member of the row's bin and draws from it, i.e. samples the aggregate posterior itself
        # (a Gaussian per bin misses its non-Gaussian shape). Fixed size so checkpoints keep one shape.
        n_bank = int(bank_size) if kind == "aggregate" else 0
        self.register_buffer("bank_loc", torch.zeros(n_bank, latent_dim))
        self.register_buffer("bank_scale", torch.ones(n_bank, latent_dim))
        self.register_buffer("bank_start", torch.zeros(self.n_bins, dtype=torch.long))
        self.register_buffer("bank_count", torch.zeros(self.n_bins, dtype=torch.long))

    def _bin(self, c: torch.Tensor) -> torch.Tensor:
        return condition_bin(c, self.n_bins)

    @torch.no_grad()
    def fit(self, c: torch.Tensor, z: torch.Tensor, mu: torch.Tensor | None = None,
            logvar: torch.Tensor | None = None) -> None:
        """Fit mean and covariance per bin; bins with too few samples fall back to all samples.

        The `aggregate` kind keeps (mu, exp(logvar / 2)) of up to `bank_size` posteriors instead."""
        if self.kind == "aggregate" and mu is not None and logvar is not None:
            self._fit_bank(c, mu, logvar)
            return
        if self.kind != "fitted" or z.shape[0] < 2:
            return
        finite = torch.isfinite(z).all(dim=1)
        c, z = c[finite], z[finite]
        if z.shape[0] < 2:
            return
        eye = torch.eye(z.shape[1], device=z.device, dtype=z.dtype)
        bins = self._bin(c)
        for b in range(self.n_bins):
            sel = z[bins == b] if int((bins == b).sum()) >= self.min_count else z
            cov = torch.cov(sel.T).reshape(z.shape[1], z.shape[1]) + 1e-4 * eye
            chol, info = torch.linalg.cholesky_ex(cov)
            if int(info) == 0:  # keep the previous fit for a bin whose covariance is degenerate
                self.loc[b] = sel.mean(dim=0)
                self.chol[b] = chol

    def _fit_bank(self, c: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        finite = torch.isfinite(mu).all(dim=1) & torch.isfinite(logvar).all(dim=1)
        c, mu, logvar = c[finite][: len(self.bank_loc)], mu[finite][: len(self.bank_loc)], logvar[finite][: len(self.bank_loc)]
        if mu.shape[0] < 1:
            return
        bins = self._bin(c)
        order = torch.argsort(bins, stable=True)
        n = mu.shape[0]
        self.bank_loc[:n] = mu[order]
        self.bank_scale[:n] = torch.exp(0.5 * logvar[order])
        counts = torch.bincount(bins, minlength=self.n_bins)
        starts = torch.cumsum(counts, 0) - counts
        empty = counts == 0  # a bin without posteriors draws from the whole bank
        self.bank_count.copy_(torch.where(empty, torch.full_like(counts, n), counts))
        self.bank_start.copy_(torch.where(empty, torch.zeros_like(starts), starts))

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(c.shape[0], self.loc.shape[1], generator=generator, device=c.device, dtype=c.dtype)
        if self.kind == "standard":
            return eps
        if self.kind == "aggregate" and bool(self.bank_count.any()):  # unfitted: N(loc, chol) = N(0, I)
            b = self._bin(c)
            u = torch.rand(c.shape[0], generator=generator, device=c.device, dtype=torch.float64)
            idx = self.bank_start[b] + (u * self.bank_count[b]).long().clamp_max(self.bank_count[b] - 1)
            return self.bank_loc[idx] + self.bank_scale[idx] * eps
        b = self._bin(c)
        return self.loc[b] + torch.bmm(self.chol[b], eps.unsqueeze(2)).squeeze(2)


class ShowerGenerator(nn.Module):
    """Everything generation needs, as one plain module: incident energies (MeV) -> showers (MeV).

    This is what `detsim-generate` runs and what is logged to MLflow as the model.
    """

    def __init__(self, decoder: ShowerDecoder, prior: LatentPrior, condition: EnergyCondition,
                 threshold_mev: float, calibration: str, layer_bounds: Sequence[tuple[int, int]],
                 marginals: MarginalCalibration | None = None):
        super().__init__()
        if calibration not in CALIBRATIONS:
            raise ConfigError(f"model.calibration: expected one of {CALIBRATIONS}, found {calibration!r}")
        self.decoder, self.prior, self.condition = decoder, prior, condition
        self.threshold_mev = float(threshold_mev)
        self.calibration = calibration
        self.layer_bounds = [tuple(b) for b in layer_bounds]
        self.n_voxels = int(layer_bounds[-1][1])
        self.marginals = marginals if marginals is not None else MarginalCalibration(self.n_voxels)

    def _calibrate(self, sample: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Rescale a sampled shower so its total (or each layer's) energy is the decoder's expectation."""
        groups = [(0, self.n_voxels)] if self.calibration == "total" else self.layer_bounds
        parts = []
        for a, b in groups:
            got = sample[:, a:b].sum(dim=1, keepdim=True)
            want = mean[:, a:b].sum(dim=1, keepdim=True)
            parts.append(sample[:, a:b] * torch.where(got > 0, want / got.clamp_min(1e-30), torch.ones_like(got)))
        return torch.cat(parts, dim=1)

    def forward(self, incident_energy: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Showers (N, V) MeV, decoded and sampled (on one thread) in row blocks that stay in cache.

        Rows are independent and the uniforms are drawn block after block from the same stream, so
        the result equals the whole-batch computation bit for bit (tests/test_vae_sampling_speed.py).
        """
        e_inc = incident_energy.reshape(-1).to(torch.float32)
        c = self.condition.forward(e_inc)
        z = self.prior.sample(c, generator)  # all latent draws first: the random stream stays in order
        lower = lower_log_fraction(self.threshold_mev, e_inc)
        showers = torch.empty(len(e_inc), self.n_voxels, device=z.device, dtype=z.dtype)
        block = BLOCK_ROWS if torch.get_num_threads() == 1 else max(len(e_inc), 1)
        for start in range(0, len(e_inc), block):
            rows = slice(start, start + block)
            self._decode_block(z[rows], c[rows], e_inc[rows].reshape(-1, 1),
                               None if lower is None else lower[rows], generator, showers[rows])
        return showers

    def _decode_block(self, z: torch.Tensor, c: torch.Tensor, e_inc: torch.Tensor, lower: torch.Tensor | None,
                      generator: torch.Generator | None, showers: torch.Tensor) -> None:
        """Decoder, sampling, calibration and threshold for one block of rows, written into `showers`."""
        head = self.decoder.head
        out = self.decoder(z, c)
        if self.calibration == "none" and isinstance(head, HurdleHead):
            # reuse needs no autograd graph (generate.py runs under inference_mode; a plain call may not)
            grad = torch.is_grad_enabled()
            marginals = self.marginals
            log_map = (lambda y: marginals.map_log(y, condition_bin(c, marginals.n_bins))) if marginals.active else None
            sample = head.sample_energy(out, lower, generator, e_inc, reuse=not grad,
                                        out_buffer=None if grad else showers, log_map=log_map)
            self._cut(showers.copy_(sample) if sample.data_ptr() != showers.data_ptr() else showers)
            return
        frac = head.sample_fraction(out, lower, generator)
        if self.calibration != "none":
            frac = self._calibrate(frac, head.mean_fraction(out))
        sample = frac.mul_(e_inc)  # every head returns fractions >= 0
        if sample.data_ptr() != showers.data_ptr():
            showers.copy_(sample)
        self._cut(showers)
        if self.marginals.active:  # the per-voxel map can move a hit below the threshold: cut again
            self._cut(showers.copy_(self.marginals(showers, e_inc, c)))

    def _cut(self, showers: torch.Tensor) -> torch.Tensor:
        """Zero voxels below the readout threshold, in place.

        F.threshold zeroes x <= t in one vectorised pass (masked_fill_ is ~10x slower on CPU); t is the
        float32 just below the threshold, so exactly the voxels with x < threshold are zeroed.
        """
        if self.threshold_mev <= 0:
            return showers
        below = float(np.nextafter(np.float32(self.threshold_mev), np.float32(-np.inf)))
        return nn.functional.threshold_(showers, below, 0.0)


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(incident energy (N,), showers (N, V)) from a dict, a (e, showers) pair or a CaloShowers-like object."""
    if isinstance(batch, Mapping):
        e = batch.get("incident_energy", batch.get("incident_energies"))
        return e.reshape(-1), batch["showers"]
    if isinstance(batch, (tuple, list)):
        return batch[0].reshape(-1), batch[1]
    return batch.incident_energy.reshape(-1), batch.showers


class CaloVAE(L.LightningModule):
    """The conditional VAE as a LightningModule; every number comes from `conf/model/calo_vae*.yaml`."""

    def __init__(
        self,
        geometry: Mapping[str, Any],
        latent_dim: int = 10,
        encoder: Mapping[str, Any] | None = None,
        decoder: Mapping[str, Any] | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        condition: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        prior: Mapping[str, Any] | None = None,
        calibration: str = "none",
        marginals: Mapping[str, Any] | None = None,
        readout_threshold_mev: float = 0.0,
        optimizer: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        geometry, encoder, decoder = to_plain(geometry), dict(to_plain(encoder) or {}), dict(to_plain(decoder) or {})
        self.geometry: Geometry = load_geometry(geometry)
        self.layer_slices = self.geometry.layer_slices
        n_vox = self.geometry.n_voxels
        self.transform = VoxelTransform(**dict(to_plain(preprocessing) or {}))
        self.condition = EnergyCondition(**dict(to_plain(condition) or {"e_min_mev": 256.0, "e_max_mev": 4194304.0}))
        loss_cfg = {k.removeprefix("w_"): v for k, v in dict(to_plain(loss) or {}).items()}
        self.weights = losses.LossWeights(**loss_cfg).resolve(self.geometry.n_layers)
        self.threshold = float(readout_threshold_mev)
        self.optimizer_cfg = dict(to_plain(optimizer) or {})

        enc_hidden = list(encoder.get("hidden", [200, 150, 100, 50]))
        dec_hidden = list(decoder.get("hidden") or enc_hidden[::-1])
        self.encoder = Encoder(n_vox, enc_hidden, latent_dim, encoder.get("activation", "ELU"),
                               bool(encoder.get("input_norm", False)))
        output = decoder.get("output", "sigmoid")
        if output == "sigmoid":
            head: nn.Module = SigmoidHead(dec_hidden[-1], n_vox, self.transform, decoder.get("reco_loss", "mse"))
        elif output == "hurdle":
            head = HurdleHead(dec_hidden[-1], n_vox, float(decoder.get("log_scale_min", -5.0)),
                              float(decoder.get("log_scale_max", 1.0)), decoder.get("energy", "lognormal"))
        else:
            raise ConfigError(f"model.decoder.output: expected one of {HEADS}, found {output!r}")
        prior_cfg = dict(to_plain(prior) or {})
        self.generator = ShowerGenerator(
            ShowerDecoder(latent_dim, dec_hidden, decoder.get("activation", "ELU"), head),
            LatentPrior(latent_dim, **prior_cfg),
            self.condition,
            self.threshold,
            calibration,
            [(s.start, s.stop) for s in self.layer_slices],
            MarginalCalibration(n_vox, **{k: v for k, v in dict(to_plain(marginals) or {}).items()
                                          if k != "reference_showers"}),
        )
        self.marginal_reference_showers = int(dict(to_plain(marginals) or {}).get("reference_showers", 20000))
        self._posterior: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._reference: list[tuple[torch.Tensor, torch.Tensor]] = []

    # --- the model ------------------------------------------------------------------------------
    def forward(self, incident_energy: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate showers (MeV) for the given incident energies (MeV)."""
        return self.generator(incident_energy, generator)

    @torch.inference_mode()
    def sample(self, incident_energy: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generator(incident_energy.to(self.device), generator)

    def loss_terms(self, e_inc: torch.Tensor, showers: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """All terms for a batch, plus the condition and stacked (z, mu, logvar) for the latent prior."""
        c = self.condition.forward(e_inc)
        mu, logvar = self.encoder(self.transform.forward(showers, e_inc), c)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        decoder = self.generator.decoder
        out = decoder(z, c)
        terms = decoder.head.reco_terms(out, showers, e_inc, self.threshold)
        reco = sum(terms.values())
        target = showers / e_inc.reshape(-1, 1)
        mean = decoder.head.mean_fraction(out)
        per_layer = losses.layer_fraction_loss(mean, target, self.layer_slices)
        w = self.weights
        layer_weighted = sum(wl * t for wl, t in zip(w.layer_list, per_layer))
        kl = losses.kl_divergence(mu, logvar)
        etot = losses.total_energy_loss(mean, target)
        total = w.reco * reco + w.kl_at(self.global_step) * kl + w.etot * etot + layer_weighted
        result = dict(terms) if len(terms) > 1 else {}
        result.update(reco=reco, kl=kl, etot=etot, layer=layer_weighted, loss=total)
        result.update({f"layer_{lid}": t for lid, t in zip(self.geometry.layer_ids, per_layer)})
        return result, c, torch.stack([z, mu, logvar])

    # --- Lightning hooks --------------------------------------------------------------------------
    def _step(self, batch: Any, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e_inc, showers = unpack_batch(batch)
        terms, c, z = self.loss_terms(e_inc.float(), showers.float())
        on_step = stage == "train"
        # Training steps log every term only on the steps Lightning writes to the logger ((step + 1) % n
        # == 0), since each self.log call costs time; the loss is logged on every step.
        every = self.trainer.log_every_n_steps if self._trainer is not None else 1
        if on_step and (self.global_step + 1) % max(every, 1):
            terms = {"loss": terms["loss"]}
        elif on_step:
            terms["kl_weight"] = torch.tensor(self.weights.kl_at(self.global_step))
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value, on_step=on_step, on_epoch=not on_step,
                     prog_bar=name == "loss", batch_size=len(e_inc))
        return terms["loss"], c, z

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, c, post = self._step(batch, "val")
        self._posterior.append((c.detach(), post.detach()))
        kept = sum(len(e) for e, _ in self._reference)
        if self.generator.marginals.kind != "none" and kept < self.marginal_reference_showers:
            e_inc, showers = unpack_batch(batch)
            take = self.marginal_reference_showers - kept
            self._reference.append((e_inc[:take].detach().float(), showers[:take].detach().float()))
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")[0]

    def on_validation_epoch_start(self) -> None:
        self._posterior, self._reference = [], []

    def on_validation_epoch_end(self) -> None:
        if self._posterior and not self.trainer.sanity_checking:
            c = torch.cat([p[0] for p in self._posterior])
            post = torch.cat([p[1] for p in self._posterior], dim=1)
            self.generator.prior.fit(c, post[0], post[1], post[2])
            if self._reference:
                self.fit_marginals(torch.cat([r[0] for r in self._reference]), torch.cat([r[1] for r in self._reference]))
        self._posterior, self._reference = [], []

    @torch.no_grad()
    def fit_marginals(self, e_inc: torch.Tensor, showers: torch.Tensor, seed: int = 0) -> None:
        """Fit the per-voxel marginal calibration to reference showers (MeV) and their energies (MeV).

        The generator draws `samples_per_shower` uncalibrated showers per reference energy (from the
        current prior, with a fixed seed) and the calibration maps their voxel distributions onto the
        reference's. Training calls this after each validation epoch with the validation showers, so a
        checkpoint always holds the calibration of its own decoder.
        """
        marginals = self.generator.marginals
        e_inc = e_inc.reshape(-1).to(self.device, torch.float32)
        e_gen = e_inc.repeat(max(marginals.samples_per_shower, 1))
        generator = torch.Generator(device=e_gen.device).manual_seed(seed)
        with marginals.disabled():
            generated = self.generator(e_gen, generator)
        marginals.fit(self.condition.forward(e_inc), showers.to(self.device) / e_inc.reshape(-1, 1),
                      self.condition.forward(e_gen), generated / e_gen.reshape(-1, 1))

    def configure_optimizers(self) -> Any:
        cfg = self.optimizer_cfg
        opt = torch.optim.Adam(self.parameters(), lr=float(cfg.get("lr", 1e-3)),
                               weight_decay=float(cfg.get("weight_decay", 0.0)))
        plateau = cfg.get("plateau")
        if not plateau:
            return opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **dict(plateau))
        # strict=False: a fit without validation (benchmarks, limit_val_batches=0) keeps the learning rate
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "strict": False}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the marginal calibration existed load with it unfitted (a no-op)."""
        state = checkpoint.get("state_dict", {})
        for name, value in self.generator.marginals.state_dict().items():
            state.setdefault(f"generator.marginals.{name}", value)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the MLflow run, so files generated from this checkpoint can name it."""
        run_id = getattr(self.logger, "run_id", None) if self.logger is not None else None
        if isinstance(run_id, str):
            checkpoint["mlflow_run_id"] = run_id

    def mlflow_model(self) -> tuple[nn.Module, np.ndarray]:
        """The plain generator (CPU, eval mode) and an input example, for `mlflow.pytorch.log_model`."""
        module = copy.deepcopy(self.generator).cpu().eval()
        example = np.array([[self.condition.e_min_mev], [self.condition.e_max_mev]], dtype=np.float32)
        return module, example
