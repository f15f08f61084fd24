"""Each VAE loss term on hand-made showers whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from detsim.errors import ConfigError
from detsim.models.vae import losses

# Two layers of two voxels each.
SLICES = [slice(0, 2), slice(2, 4)]


def test_right_total_energy_gives_zero_energy_loss_however_spread():
    target = torch.tensor([[0.2, 0.3, 0.4, 0.1]])
    pred = torch.tensor([[0.5, 0.0, 0.0, 0.5]])  # same total (1.0), different spread
    assert losses.total_energy_loss(pred, target).item() == 0.0


def test_total_energy_loss_is_per_shower_not_batch_summed():
    target = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    pred = torch.tensor([[0.6, 0.5, 0.0, 0.0], [0.4, 0.5, 0.0, 0.0]])  # +0.1 and -0.1: cancel in a batch sum
    batch_summed = (pred.sum() - target.sum()).pow(2).item()
    assert batch_summed == pytest.approx(0.0, abs=1e-12)
    assert losses.total_energy_loss(pred, target).item() == pytest.approx(0.01, rel=1e-5)


def test_wrong_layer_fractions_give_the_expected_value():
    target = torch.tensor([[0.25, 0.25, 0.25, 0.25]])  # fractions (0.5, 0.5)
    pred = torch.tensor([[0.6, 0.2, 0.1, 0.1]])  # fractions (0.8, 0.2)
    per_layer = losses.layer_fraction_loss(pred, target, SLICES)
    assert per_layer.tolist() == pytest.approx([0.09, 0.09], rel=1e-5)
    # a uniformly rescaled shower has the right fractions: layer term zero, energy term not
    assert losses.layer_fraction_loss(3 * target, target, SLICES).abs().max().item() < 1e-7
    assert losses.total_energy_loss(3 * target, target).item() == pytest.approx(4.0)


def test_layer_fraction_loss_averages_showers():
    target = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    pred = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]])  # second: (1, 0) vs (0.5, 0.5)
    assert losses.layer_fraction_loss(pred, target, SLICES).tolist() == pytest.approx([0.125, 0.125])


def test_kl_zero_at_prior_and_known_value():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert losses.kl_divergence(mu, logvar).item() == 0.0
    mu = torch.full((3, 4), 1.0)  # 0.5 * mu^2 per dimension -> 2.0 per shower
    assert losses.kl_divergence(mu, logvar).item() == pytest.approx(2.0)


def test_mse_sums_voxels_and_averages_showers():
    pred = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    target = torch.zeros(2, 2)
    assert losses.mse_per_shower(pred, target).item() == pytest.approx(1.0)


def test_truncated_normal_nll_matches_scipy_formula():
    y = torch.tensor([[0.5]])
    loc, log_scale, lower = torch.tensor([[0.0]]), torch.tensor([[0.0]]), torch.tensor([[-1.0]])
    nll = losses.truncated_normal_nll(y, loc, log_scale, lower, torch.ones(1, 1)).item()
    from scipy.stats import truncnorm

    assert nll == pytest.approx(-truncnorm.logpdf(0.5, -1.0, math.inf), rel=1e-5)
    # masked voxels (no hit) contribute nothing
    assert losses.truncated_normal_nll(y, loc, log_scale, lower, torch.zeros(1, 1)).item() == 0.0


def test_hit_bce_is_small_for_confident_right_answers():
    hit = torch.tensor([[1.0, 0.0]])
    assert losses.hit_bce(torch.tensor([[20.0, -20.0]]), hit).item() < 1e-6
    assert losses.hit_bce(torch.tensor([[0.0, 0.0]]), hit).item() == pytest.approx(2 * math.log(2), rel=1e-5)


def test_weights_per_layer_and_kl_warmup():
    w = losses.LossWeights(kl=2.0, layer=[1.0, 3.0], kl_warmup_steps=100).resolve(2)
    assert w.layer_list == [1.0, 3.0]
    assert [w.kl_at(s) for s in (0, 50, 100, 500)] == [0.0, 1.0, 2.0, 2.0]
    assert losses.LossWeights(layer=0.5).resolve(3).layer_list == [0.5, 0.5, 0.5]
    with pytest.raises(ConfigError, match="one weight per layer"):
        losses.LossWeights(layer=[1.0, 1.0]).resolve(5)


def test_truncated_weibull_nll_matches_scipy():
    from scipy.stats import weibull_min

    k, lam, t, x = 0.6, 2.0, 0.1, 0.7
    y = torch.tensor([[math.log(x)]])
    loc, log_scale = torch.tensor([[math.log(lam)]]), torch.tensor([[-math.log(k)]])
    nll = losses.truncated_weibull_nll(y, loc, log_scale, torch.tensor([[math.log(t)]]), torch.ones(1, 1)).item()
    # density of log x under the Weibull truncated at t: f(x) x / S(t)
    expected = -(weibull_min.logpdf(x, k, scale=lam) + math.log(x) - weibull_min.logsf(t, k, scale=lam))
    assert nll == pytest.approx(expected, rel=1e-5)
