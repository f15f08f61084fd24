"""Network parts of the calorimeter VAE: MLP blocks, the encoder q(z | x, c) and the decoder p(x | z, c).

The encoder sees the preprocessed voxels and the log-scaled incident energy; the decoder's trunk sees the
latent point and the same condition and hands its last hidden layer to a voxel head (`heads.py`).

The decoder computes its distribution parameters two ways, for two jobs: `forward` for training (what the loss
terms need, through `nn.Linear`), `sampling_params` for generation (what the sampler needs, with the biases
inside the matmuls: `linear_bias_row`). Generation runs `sampling_params` eagerly, compiled and exported alike,
so every runtime computes one formula (tests/test_export.py checks them against each other).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from detsim.errors import ConfigError


def activation(name: str) -> nn.Module:
    """A torch.nn activation by class name (config `activation: ELU`)."""
    try:
        return getattr(nn, name)()
    except AttributeError as exc:
        raise ConfigError(f"model activation: expected a torch.nn class name (ELU, ReLU, ...), found {name!r}") from exc


def linear_bias_row(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x) as one matmul: the bias is a last row of the weight matrix, times a column of ones appended to x.

    Why: CPU addmm (torch's, and ONNX Runtime's Gemm) first copies the broadcast bias into its output, a whole
    extra pass over batch x out (for the voxel head of a 10,000 batch as long as the matmul itself); a separate
    bias add is fused back into addmm by torch.compile. One more input column costs 1/in of the matmul, and the
    weight rows are constants in an exported graph. Training keeps `nn.Linear`: at its small batches the copied
    weight matrix would cost more than the bias pass.
    """
    if layer.bias is None:
        return layer(x)
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    return torch.mm(torch.cat([x, ones], dim=1), torch.cat([layer.weight.t(), layer.bias.reshape(1, -1)], dim=0))


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
        """The head's parameters for training (`VoxelHead.forward`)."""
        return self.head(self.trunk(torch.cat([z, c], dim=1)))

    def sampling_params(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """The head's parameters for its sampler (`VoxelHead.sampling_params`), every Linear as `linear_bias_row`."""
        h = torch.cat([z, c], dim=1)
        for layer in self.trunk:
            h = linear_bias_row(layer, h) if isinstance(layer, nn.Linear) else layer(h)
        return self.head.sampling_params(h)
