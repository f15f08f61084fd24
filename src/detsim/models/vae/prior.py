"""Latent priors: where generation draws z (config group `model/vae/prior`).

A VAE's aggregate posterior rarely fills N(0, I); sampling where the decoder was trained avoids decoding
latent points it never saw. Each prior splits sampling into `draw` (the random numbers, in a fixed order
from one torch.Generator, `rng`) and `transform` (a deterministic function of the condition and those numbers),
so an exported graph takes the numbers as inputs and a host controls the random stream.

- `StandardPrior`: N(0, I).
- `FittedPrior`: per incident-energy bin, a Gaussian fitted to the validation posterior samples.
- `AggregatePrior`: per bin, the validation posteriors N(mu_i, sigma_i) themselves: a random member of
  the row's bin, then a draw from it (a Gaussian per bin misses the aggregate's non-Gaussian shape).
"""

from __future__ import annotations

import torch
from torch import nn

from detsim.models.vae.transforms import condition_bin


class LatentPrior(nn.Module):
    """Base: N(0, I) normals, mapped per condition bin. Built as `Prior(latent_dim, **config)`."""

    def __init__(self, latent_dim: int, n_bins: int = 1):
        super().__init__()
        self.latent_dim, self.n_bins = int(latent_dim), int(n_bins)

    def draw(self, n: int, rng: torch.Generator | None, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The random numbers for `n` rows: {"normal": (n, latent_dim)} plus what a subclass needs."""
        return {"normal": torch.randn(n, self.latent_dim, generator=rng, device=device, dtype=dtype)}

    def transform(self, c: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """z (N, latent_dim) for conditions c (N, 1) from the numbers `draw` made."""
        return draws["normal"]

    def sample(self, c: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        return self.transform(c, self.draw(c.shape[0], rng, c.device, c.dtype))

    @torch.no_grad()
    def fit(self, c: torch.Tensor, z: torch.Tensor, mu: torch.Tensor | None = None,
            logvar: torch.Tensor | None = None) -> None:
        """Fit to validation posteriors: conditions (N, 1), samples z, means and log-variances (N, latent_dim)."""

    def _bin(self, c: torch.Tensor) -> torch.Tensor:
        return condition_bin(c, self.n_bins)


class StandardPrior(LatentPrior):
    """N(0, I), whatever the condition (the plain VAE's prior)."""


class FittedPrior(LatentPrior):
    """Per condition bin, a Gaussian fitted to posterior samples; bins with fewer than `min_count` use all."""

    def __init__(self, latent_dim: int, n_bins: int, min_count: int):
        super().__init__(latent_dim, n_bins)
        self.min_count = int(min_count)
        self.register_buffer("loc", torch.zeros(self.n_bins, latent_dim))
        self.register_buffer("chol", torch.eye(latent_dim).repeat(self.n_bins, 1, 1))

    def transform(self, c: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        b = self._bin(c)  # index_select: an ONNX Gather (indexing exports as the slower GatherND)
        chol = self.chol.index_select(0, b)
        return self.loc.index_select(0, b) + torch.bmm(chol, draws["normal"].unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def fit(self, c, z, mu=None, logvar=None) -> None:
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


class AggregatePrior(LatentPrior):
    """Per condition bin, the stored validation posteriors N(mu_i, sigma_i); unfitted it is N(0, I).

    The bank has a fixed size (`bank_size` posteriors, sorted by bin) so checkpoints keep one shape.
    """

    def __init__(self, latent_dim: int, n_bins: int, bank_size: int):
        super().__init__(latent_dim, n_bins)
        n_bank = int(bank_size)
        self.register_buffer("bank_loc", torch.zeros(n_bank, latent_dim))
        self.register_buffer("bank_scale", torch.ones(n_bank, latent_dim))
        self.register_buffer("bank_start", torch.zeros(self.n_bins, dtype=torch.long))
        self.register_buffer("bank_count", torch.zeros(self.n_bins, dtype=torch.long))

    @property
    def fitted(self) -> bool:
        return bool(self.bank_count.any())

    def draw(self, n, rng, device="cpu", dtype=torch.float32):
        draws = super().draw(n, rng, device, dtype)
        if self.fitted:  # which bank member each row draws from (float64: exact for large banks)
            draws["member"] = torch.rand(n, generator=rng, device=device, dtype=torch.float64)
        return draws

    def transform(self, c, draws):
        if "member" not in draws:
            return draws["normal"]
        b = self._bin(c)
        count = self.bank_count[b]
        idx = self.bank_start[b] + (draws["member"] * count).long().clamp_max(count - 1)
        return self.bank_loc[idx] + self.bank_scale[idx] * draws["normal"]

    @torch.no_grad()
    def fit(self, c, z, mu=None, logvar=None) -> None:
        if mu is None or logvar is None:
            return
        finite = torch.isfinite(mu).all(dim=1) & torch.isfinite(logvar).all(dim=1)
        keep = len(self.bank_loc)
        c, mu, logvar = c[finite][:keep], mu[finite][:keep], logvar[finite][:keep]
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
