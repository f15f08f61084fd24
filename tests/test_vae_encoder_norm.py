"""Regression test for the non-finite validation loss on Geant4 ds2/ds3 (docs/studies/2026-11-30-vae-on-geant4.md):
the encoder's input BatchNorm, in evaluation mode after a few training steps, must map sparse logit showers to
values of order one, also where a validation shower hits a voxel that was empty in every training batch."""

from __future__ import annotations

import torch

from detsim.models.vae.layers import Encoder

EMPTY = -13.8  # logit of an empty voxel


def _sparse_logits(n: int, n_voxels: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.full((n, n_voxels), EMPTY)
    hits = torch.rand(n, n_voxels, generator=generator) < 0.3
    x[hits] = torch.randn(int(hits.sum()), generator=generator) * 2 - 4
    x[:, -1] = EMPTY  # the last voxel is empty in all training showers
    return x


def _eval_inputs_after_training_steps(norm_eps: float, norm_momentum: float | None,
                                      steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    enc = Encoder(16, [8], 2, "ELU", True, norm_eps, norm_momentum)
    enc.train()
    for _ in range(steps):
        enc.norm(_sparse_logits(64, 16, g))
    enc.eval()
    val = _sparse_logits(64, 16, g)
    val[0, -1] = -2.0  # a validation shower hits the voxel no training shower hit
    with torch.no_grad():
        return enc.norm(val), val


def test_default_normalisation_keeps_sparse_validation_inputs_of_order_one() -> None:
    early, _ = _eval_inputs_after_training_steps(1e-2, None, 8)  # the divergence showed at epoch 2, ~8 steps in
    assert early[:, :-1].mean().abs() < 0.5 and 0.5 < early[:, :-1].std() < 2.0  # standardised already
    late, _ = _eval_inputs_after_training_steps(1e-2, None, 300)
    assert late[0, -1].abs() < 130  # the never-hit voxel: bounded by (13.8 - 2) / sqrt(eps)


def test_the_old_settings_fail_this_check() -> None:
    """The pre-fix BatchNorm (eps 1e-5, momentum 0.1): empty voxels arrive far from zero, the never-hit voxel
    is amplified by ~3700 — what overflowed val/etot."""
    early, _ = _eval_inputs_after_training_steps(1e-5, 0.1, 8)
    assert early[:, :-1].mean().abs() > 1.0  # running mean still near its start: inputs offset by the empty logit
    late, _ = _eval_inputs_after_training_steps(1e-5, 0.1, 300)
    assert late[0, -1].abs() > 1000
