"""The energy bookkeeping of generated showers: layer energies and the total, mapped onto the training data's
distribution per incident-energy bin (config group `model/vae/energy_map`).

Why: a VAE whose voxels are sampled independently given the latent point gets the *average* shower right but
not its fluctuations: the spread of E_tot / E_inc (the energy resolution) is the sum of thousands of voxel
fluctuations that the decoder never sees as one number, and came out 1.2-1.5x Geant4's at 3-100 GeV, with a
tail the classifier AUC does not see (docs/studies/2026-12-07-physics-fidelity.md). The leading dataset-2
models keep the energy bookkeeping apart from the shape (CaloFlow's and CaloDREAM's energy networks). Here
the VAE still generates the whole shower, and this stage then moves, per incident-energy bin, each layer's
energy onto the training showers' distribution of that layer's energy (a monotone quantile map, so the
shower's own rank stays: a shower that starts late keeps less energy in the early layers than its
neighbours) and finally the total onto the training showers' E_tot / E_inc distribution. Voxels are scaled
by their layer's factor, so the shape inside a layer is the decoder's.

Structural bounds: each map's table ends at the largest value of its reference in that bin (times
e^cap_margin), so E_tot / E_inc cannot leave the physically seen range by more than that, and every voxel is
capped at `max_voxel_fraction` x E_inc.

`QuantileEnergyMap` reuses the per-voxel quantile map (`voxel_map.QuantileVoxelMap`) with layers (and the
total) as its columns: one quantile-mapping code for voxels, layers and totals. `NoEnergyMap` keeps the
sampled energies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.models.vae.transforms import condition_bin
from detsim.models.vae.voxel_map import QuantileVoxelMap


def layer_matrix(layer_bounds: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(V, L) 0/1 matrix: showers @ it = per-layer energies (a matmul exports to every runtime)."""
    n_vox = int(layer_bounds[-1][1])
    m = torch.zeros(n_vox, len(layer_bounds))
    for layer, (a, b) in enumerate(layer_bounds):
        m[a:b, layer] = 1.0
    return m


def layer_of_voxel(layer_bounds: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(V,) layer index of each voxel."""
    return torch.cat([torch.full((b - a,), i, dtype=torch.int64) for i, (a, b) in enumerate(layer_bounds)])


class EnergyMap(nn.Module):
    """Base: maps generated showers' layer energies and totals onto a reference's, per incident-energy bin.

    Built as `Map(layer_bounds=..., **config)`. Training fits it after each validation epoch: the generator
    draws `samples_per_shower` showers (map off) per training shower (up to `reference_showers`), and the
    training showers' layer energies are the reference.
    """

    def __init__(self, layer_bounds: Sequence[tuple[int, int]], samples_per_shower: int = 0,
                 reference_showers: int = 0, max_voxel_fraction: float = 1.0) -> None:
        super().__init__()
        if max_voxel_fraction <= 0:
            raise ConfigError(f"model.energy_map.max_voxel_fraction: expected > 0, found {max_voxel_fraction}")
        bounds = [(int(a), int(b)) for a, b in layer_bounds]
        self.n_layers = len(bounds)
        self.samples_per_shower, self.reference_showers = int(samples_per_shower), int(reference_showers)
        self.max_voxel_fraction = float(max_voxel_fraction)
        self.register_buffer("to_layers", layer_matrix(bounds), persistent=False)
        self.register_buffer("voxel_layer", layer_of_voxel(bounds), persistent=False)
        # no state without tables: models trained before the energy map load unchanged
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool), persistent=not isinstance(self, NoEnergyMap))
        self.enabled = True

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.fitted)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Generation without the map (the draws its fit needs)."""
        before, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = before

    def layer_energies(self, showers: torch.Tensor) -> torch.Tensor:
        """(N, L) layer energies of showers (N, V) (any unit)."""
        return showers @ self.to_layers

    @torch.no_grad()
    def fit(self, c_ref: torch.Tensor, layers_ref: torch.Tensor, c_gen: torch.Tensor, layers_gen: torch.Tensor) -> None:
        """Fit from reference and generated layer fractions E_layer / E_inc (N, L) and their conditions."""
        raise NotImplementedError

    def map_showers(self, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Showers (N, V) MeV with their layer energies and total mapped; no data-dependent branch (graphs)."""
        raise NotImplementedError


class NoEnergyMap(EnergyMap):
    """No map: energies as sampled."""

    @property
    def active(self) -> bool:
        return False

    @torch.no_grad()
    def fit(self, c_ref, layers_ref, c_gen, layers_gen) -> None:
        return


class QuantileEnergyMap(EnergyMap):
    """Per incident-energy bin: each layer's log(E_layer / E_inc) (with `layers`), then log(E_tot / E_inc),
    quantile-mapped onto the reference's; a shower's voxels are scaled by their layer's factor times the total's."""

    def __init__(self, layer_bounds: Sequence[tuple[int, int]], layers: bool, n_bins: int, n_knots: int, grid: int,
                 margin: float, cap_margin: float, min_showers: int, samples_per_shower: int,
                 reference_showers: int, max_voxel_fraction: float = 1.0) -> None:
        super().__init__(layer_bounds, samples_per_shower, reference_showers, max_voxel_fraction)
        self.layers = bool(layers)
        self.n_bins = int(n_bins)
        table = dict(n_bins=n_bins, n_knots=n_knots, grid=grid, margin=margin, min_hits=min_showers,
                     samples_per_shower=0, reference_showers=0, cap_margin=cap_margin)
        self.layer_map = QuantileVoxelMap(self.n_layers, **table) if self.layers else None
        self.total_map = QuantileVoxelMap(1, **table)

    @torch.no_grad()
    def fit(self, c_ref, layers_ref, c_gen, layers_gen) -> None:
        if self.layer_map is not None:
            self.layer_map.fit(c_ref, layers_ref, c_gen, layers_gen)
            layers_gen = self._map_layers(layers_gen, condition_bin(c_gen, self.n_bins))
        self.total_map.fit(c_ref, layers_ref.sum(dim=1, keepdim=True), c_gen, layers_gen.sum(dim=1, keepdim=True))
        self.fitted.fill_(True)

    def _map_layers(self, frac: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """Layer fractions (N, L) through the layer map (empty layers stay empty)."""
        hit = frac > 0
        y = torch.log(torch.where(hit, frac, torch.ones_like(frac)))
        return self.layer_map.map_log(y, bins).exp() * hit

    def map_showers(self, showers, e_inc, c):
        bins = condition_bin(c, self.n_bins)
        frac = self.layer_energies(showers) / e_inc
        hit = frac > 0
        if self.layer_map is not None:
            mapped = self._map_layers(frac, bins)
            layer_scale = torch.where(hit, mapped / torch.where(hit, frac, torch.ones_like(frac)),
                                      torch.ones_like(frac))
            total = mapped.sum(dim=1, keepdim=True)
        else:
            layer_scale = torch.ones_like(frac)
            total = frac.sum(dim=1, keepdim=True)
        some = total > 0
        safe_total = torch.where(some, total, torch.ones_like(total))
        total_scale = torch.where(some, self.total_map.map_log(torch.log(safe_total), bins).exp() / safe_total,
                                  torch.ones_like(total))
        scale = (layer_scale * total_scale).index_select(1, self.voxel_layer)
        return torch.minimum(showers * scale, e_inc * self.max_voxel_fraction)
