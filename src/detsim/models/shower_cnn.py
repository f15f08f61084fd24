"""CNN backbones over the layered calorimeter geometry, and the particle-ID classifier built on them.

Input of every backbone is the low-level row `[log10 E_inc, voxels / E_inc * scale]` (see
`detsim.eval.features.low_level_inputs`), so the same network serves the classifier two-sample test
and particle identification. Two layouts:
- uniform geometries (all layers the same cell shape, e.g. CaloChallenge datasets 2/3): the shower is
  a (layers, alpha, r) volume and a 3D CNN convolves across layers too;
- irregular ones (dataset 1, CaloGAN): each layer gets its own small 2D CNN and the pooled layer
  features are concatenated.
The angular axis of a radial layer is periodic, so it is padded circularly rather than with zeros.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hydra.utils import instantiate

from detsim.errors import ConfigError
from detsim.geometry import Geometry, RadialLayer


def mlp_head(n_in: int, hidden: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear -> LeakyReLU (-> Dropout) blocks ending in one logit."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.LeakyReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers)


class MLPBackbone(nn.Module):
    """The CaloChallenge classifier: a plain MLP on the flat input row, one logit out."""

    def __init__(self, input_dim: int, hidden: int = 2048, n_hidden_layers: int = 3, dropout: float = 0.0):
        super().__init__()
        self.net = mlp_head(input_dim, [hidden] * n_hidden_layers, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class _PeriodicConv(nn.Module):
    """Conv (2D or 3D) with 'same' padding: circular along the angular axis, zeros elsewhere."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, periodic_axis: int | None):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv = conv(c_in, c_out, kernel, padding=0)
        self.pad = kernel // 2
        self.dims = dims
        self.periodic_axis = periodic_axis  # spatial axis index (0-based, excluding batch and channel)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        p = self.pad
        if p:
            zero_pad: list[int] = []
            for axis in reversed(range(self.dims)):  # F.pad lists the last axis first
                zero_pad += [0, 0] if axis == self.periodic_axis else [p, p]
            if self.periodic_axis is not None:
                dim = 2 + self.periodic_axis
                n = v.shape[dim]
                reps = -(-p // n)  # a ring narrower than the kernel wraps more than once
                ring = torch.cat([v] * (2 * reps + 1), dim=dim)
                start = reps * n - p
                v = ring.narrow(dim, start, n + 2 * p)
            v = F.pad(v, zero_pad)
        return F.leaky_relu(self.conv(v))


def _conv_stack(dims: int, channels: Sequence[int], kernel: int, periodic_axis: int | None) -> nn.Sequential:
    blocks, c_in = [], 1
    for c_out in channels:
        blocks.append(_PeriodicConv(dims, c_in, c_out, kernel, periodic_axis))
        c_in = c_out
    return nn.Sequential(*blocks)


class _VoxelInput(nn.Module):
    """Splits the input row into log10 E_inc and (optionally log1p-compressed) voxel values."""

    def __init__(self, log_voxels: bool):
        super().__init__()
        self.log_voxels = log_voxels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond, voxels = x[:, :1], x[:, 1:]
        return cond, torch.log1p(voxels.clamp_min(0)) if self.log_voxels else voxels


class LayerStackCNN(nn.Module):
    """3D CNN over (layer, alpha, r) or (layer, y, x) for geometries whose layers share one cell shape."""

    def __init__(
        self,
        geometry: Geometry,
        channels: Sequence[int] = (8, 16),
        kernel: int = 3,
        pool: Sequence[int] = (4, 2, 2),
        head: Sequence[int] = (64,),
        dropout: float = 0.0,
        log_voxels: bool = True,
    ):
        super().__init__()
        if not geometry.is_uniform:
            raise ValueError(f"{geometry.name}: LayerStackCNN needs layers of one cell shape; use PerLayerCNN")
        first = geometry.layers[0]
        self.volume = (geometry.n_layers, *first.shape)
        periodic = 1 if isinstance(first, RadialLayer) and first.n_alpha > 1 else None
        self.inputs = _VoxelInput(log_voxels)
        self.convs = _conv_stack(3, channels, kernel, periodic)
        self.pool = nn.AdaptiveAvgPool3d(tuple(min(p, s) for p, s in zip(pool, self.volume)))
        n_pooled = channels[-1] * int(torch.tensor(self.pool.output_size).prod())
        self.head = mlp_head(n_pooled + 1, head, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cond, voxels = self.inputs(x)
        v = voxels.reshape(x.shape[0], 1, *self.volume)
        pooled = self.pool(self.convs(v)).flatten(1)
        return self.head(torch.cat([cond, pooled], dim=1)).squeeze(-1)


class PerLayerCNN(nn.Module):
    """One 2D CNN per layer (cells differ between layers, e.g. dataset 1 or CaloGAN), pooled and joined."""

    def __init__(
        self,
        geometry: Geometry,
        channels: Sequence[int] = (8, 16),
        kernel: int = 3,
        pool: Sequence[int] = (2, 2),
        head: Sequence[int] = (64,),
        dropout: float = 0.0,
        log_voxels: bool = True,
    ):
        super().__init__()
        self.shapes = [layer.shape for layer in geometry.layers]
        self.slices = geometry.layer_slices
        self.inputs = _VoxelInput(log_voxels)
        stacks, pools = [], []
        for layer in geometry.layers:
            periodic = 0 if isinstance(layer, RadialLayer) and layer.n_alpha > 1 else None
            stacks.append(_conv_stack(2, channels, kernel, periodic))
            pools.append(nn.AdaptiveAvgPool2d(tuple(min(p, s) for p, s in zip(pool, layer.shape))))
        self.stacks = nn.ModuleList(stacks)
        self.pools = nn.ModuleList(pools)
        n_pooled = sum(channels[-1] * p.output_size[0] * p.output_size[1] for p in pools)
        # Layer energies enter directly: pooling blurs the absolute scale the physics depends on.
        self.head = mlp_head(n_pooled + 1 + len(self.shapes), head, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cond, voxels = self.inputs(x)
        parts = [cond]
        raw = x[:, 1:]
        parts.append(torch.log1p(torch.stack([raw[:, s].sum(1) for s in self.slices], dim=1).clamp_min(0)))
        for sl, shape, stack, pool in zip(self.slices, self.shapes, self.stacks, self.pools):
            v = voxels[:, sl].reshape(x.shape[0], 1, *shape)
            parts.append(pool(stack(v)).flatten(1))
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)


def build_shower_cnn(geometry: Geometry, **kwargs) -> nn.Module:
    """The 3D layer-stack CNN for uniform geometries, per-layer 2D CNNs otherwise.

    `pool` may hold 3 numbers (layer, first, second); the per-layer CNN uses the last two.
    """
    if geometry.is_uniform and geometry.n_layers > 1:
        return LayerStackCNN(geometry, **kwargs)
    if "pool" in kwargs and len(kwargs["pool"]) == 3:
        kwargs = dict(kwargs, pool=tuple(kwargs["pool"])[1:])
    return PerLayerCNN(geometry, **kwargs)


def backbone_factory(backbone_cfg: Mapping[str, Any], geometry: Geometry) -> Callable[[int], nn.Module]:
    """`make(input_dim)` for a `_target_` backbone config that takes `input_dim` (MLP) or `geometry` (CNN)."""
    partial = instantiate(backbone_cfg, _partial_=True, _convert_="all")
    params = inspect.signature(partial.func).parameters

    def make(input_dim: int) -> nn.Module:
        if "geometry" in params:
            return partial(geometry=geometry)
        if "input_dim" in params:
            return partial(input_dim=input_dim)
        raise ConfigError(f"backbone {backbone_cfg.get('_target_')} takes neither `input_dim` nor `geometry`")

    return make
