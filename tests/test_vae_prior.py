"""The aggregate-posterior prior: unfitted it is N(0, I); fitted it draws from the stored posteriors of the
incident-energy bin asked for, so low- and high-energy showers get their own latent regions."""

from __future__ import annotations

import torch

from detsim.models.vae import AggregatePrior, LatentPrior


def test_unfitted_aggregate_prior_is_standard_normal() -> None:
    prior = AggregatePrior(latent_dim=3, n_bins=2, bank_size=100)
    assert isinstance(prior, LatentPrior)  # the public base class is the real one
    z = prior.sample(torch.full((20000, 1), 0.3), rng=torch.Generator().manual_seed(0))
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1.0) < 0.03


def test_fitted_aggregate_prior_samples_the_posteriors_of_each_energy_bin() -> None:
    prior = AggregatePrior(latent_dim=2, n_bins=2, bank_size=400)
    c = torch.cat([torch.full((200, 1), 0.2), torch.full((200, 1), 0.8)])   # bin 0, then bin 1
    mu = torch.cat([torch.full((200, 2), -5.0), torch.full((200, 2), 5.0)])
    logvar = torch.full((400, 2), 2 * torch.log(torch.tensor(0.1)).item())   # posterior width 0.1
    prior.fit(c, mu, mu=mu, logvar=logvar)
    rng = torch.Generator().manual_seed(1)
    low = prior.sample(torch.full((5000, 1), 0.1), rng=rng)
    high = prior.sample(torch.full((5000, 1), 0.9), rng=rng)
    assert torch.allclose(low.mean(0), torch.tensor([-5.0, -5.0]), atol=0.01)
    assert torch.allclose(high.mean(0), torch.tensor([5.0, 5.0]), atol=0.01)
    assert abs(float(low.std()) - 0.1) < 0.01 and abs(float(high.std()) - 0.1) < 0.01
