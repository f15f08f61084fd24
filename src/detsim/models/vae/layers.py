"""Network parts of the calorimeter VAE: MLP blocks, the encoder q(z | x, c) and the decoder p(x | z, c).

The encoder sees the preprocessed voxels and the log-scaled incident energy; the decoder's trunk sees the
latent point and the same condition and hands its last hidden layer to a voxel head (`heads.py`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.models.vae.graph_mode import sequential


def activation(name: str) -> nn.Module:
    """A torch.nn activation by class name (config `activation: ELU`)."""
    try:
        return getattr(nn, name)()
    except AttributeError as exc:
        raise ConfigError(f"model activation: expected a torch.nn class name (ELU, ReLU, ...), found {name!r}") from exc


def mlp(sizes: Sequence[int], activation_name: str) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, each followed by the activation."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), activation(activation_name)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z | x, c): preprocessed voxels and condition -> (mu, logvar)."""

    def __init__(self, n_voxels: int, hidden: Sequence[int], latent_dim: int, activation: str, input_norm: bool,
                 norm_eps: float, norm_momentum: float | None):
        super().__init__()
        # Standardising the inputs matters for logit inputs (values near -14 for empty voxels). Two settings keep
        # the evaluation-mode statistics sane on sparse (Geant4) showers: a cumulative average (momentum None)
        # instead of an exponential one that still sits near its start (mean 0, var 1) after a few steps, and an
        # eps that floors the width of voxels empty in training, which a 1e-5 eps would scale by ~300.
        self.norm = (nn.BatchNorm1d(n_voxels, affine=False, eps=float(norm_eps), momentum=norm_momentum)
                     if input_norm else nn.Identity())
        self.body = mlp([n_voxels + 1, *hidden], activation)
        self.head = nn.Linear(hidden[-1], 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(torch.cat([self.norm(x), c], dim=1))).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)


class ShowerDecoder(nn.Module):
    """p(x | z, c): MLP trunk plus a voxel head (a `heads.VoxelHead`)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], activation: str, head: nn.Module):
        super().__init__()
        self.trunk = mlp([latent_dim + 1, *hidden], activation)
        self.head = head

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(sequential(self.trunk, torch.cat([z, c], dim=1)))
