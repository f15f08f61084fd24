"""The energy bookkeeping of generated showers: layer energies and the total, mapped onto the training data's
distribution per incident-energy bin (config group `model/vae/energy_map`).

Why: a VAE whose voxels are sampled independently given the latent point gets the *average* shower right but
not its fluctuations: the spread of E_tot / E_inc (the energy resolution) is the sum of thousands of voxel
fluctuations that the decoder never sees as one number, and came out 1.2-1.5x Geant4's at 3-100 GeV, with a
tail the classifier AUC does not see (docs/studies/2026-12-07-physics-fidelity.md). The leading dataset-2
models keep the energy bookkeeping apart from the shape (CaloFlow's and CaloDREAM's energy networks). Here
the VAE still generates the whole shower, and this stage then moves, per incident-energy bin, the energy of
each voxel group (a (layer, radial ring) cell: the longitudinal and radial profiles; or a layer) onto the
training showers' distribution of that group's energy (a monotone quantile map, so the shower's own rank
stays: a shower that starts late keeps less energy in the early layers than its neighbours) and finally the
total onto the training showers' E_tot / E_inc distribution. Voxels are scaled by their group's factor, so
the shape inside a group (the angular distribution, which voxels fire) is the decoder's.

Structural bounds: each map's table ends at the largest value of its reference in that bin (times
e^cap_margin), so E_tot / E_inc cannot leave the physically seen range by more than that, and every voxel is
capped at `max_voxel_fraction` x E_inc.

`QuantileEnergyMap` reuses the per-voxel quantile map (`voxel_map.QuantileVoxelMap`) with the groups (and the
total) as its columns: one quantile-mapping code for voxels, layers and totals. `NoEnergyMap` keeps the
sampled energies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.models.vae.fitted import FittedMap
from detsim.models.vae.transforms import condition_bin
from detsim.models.vae.voxel_map import IDENTITY_RANGE, QuantileVoxelMap


GROUPINGS = ("rings", "layers", "none")
SPILLS = ("none", "hits", "cell")  # where a voxel's energy above its cap goes: lost, the cell's hits, the whole cell
EMPTY_LOG = IDENTITY_RANGE[0] + 1.0  # mapped log fractions at or below this empty their group (match_occupancy)
Bound = Callable[[torch.Tensor], torch.Tensor]


def voxel_groups(layer_bounds: Sequence[tuple[int, int]], voxel_ring: Sequence[int] | None, grouping: str) -> torch.Tensor:
    """(V,) group index of each voxel: its layer ("layers", "none"), or its (layer, radial ring) ("rings")."""
    if grouping not in GROUPINGS:
        raise ConfigError(f"model.energy_map.groups: expected one of {GROUPINGS}, found {grouping!r}")
    layer = torch.cat([torch.full((b - a,), i, dtype=torch.int64) for i, (a, b) in enumerate(layer_bounds)])
    if grouping != "rings" or voxel_ring is None:
        return layer
    ring = torch.as_tensor(np.asarray(voxel_ring), dtype=torch.int64)
    return torch.unique(layer * (int(ring.max()) + 1) + ring, return_inverse=True)[1]


def group_matrix(groups: torch.Tensor) -> torch.Tensor:
    """(V, G) 0/1 matrix: showers @ it = per-group energies (a matmul exports to every runtime)."""
    return nn.functional.one_hot(groups, int(groups.max()) + 1).to(torch.float32)


def layer_matrix(layer_bounds: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(V, L) 0/1 matrix of the layers."""
    return group_matrix(voxel_groups(layer_bounds, None, "layers"))


class EnergyMap(FittedMap):
    """Base: maps generated showers' group energies and totals onto a reference's, per incident-energy bin.

    Built as `Map(layer_bounds=..., voxel_ring=..., **config)`. Training fits it after each validation epoch:
    the generator draws `samples_per_shower` showers (map off) per kept training shower (up to
    `reference_showers`), whose `group_energies` are the reference.
    """

    def __init__(self, layer_bounds: Sequence[tuple[int, int]], samples_per_shower: int = 0,
                 reference_showers: int = 0, max_voxel_fraction: float = 1.0,
                 voxel_ring: Sequence[int] | None = None) -> None:
        super().__init__(persistent=not isinstance(self, NoEnergyMap))  # NoEnergyMap: no state, old models load
        if max_voxel_fraction <= 0:
            raise ConfigError(f"model.energy_map.max_voxel_fraction: expected > 0, found {max_voxel_fraction}")
        self.layer_bounds = [(int(a), int(b)) for a, b in layer_bounds]
        self.samples_per_shower, self.reference_showers = int(samples_per_shower), int(reference_showers)
        self.max_voxel_fraction = float(max_voxel_fraction)

    def group_energies(self, showers: torch.Tensor) -> torch.Tensor:
        """(N, G) what the map keeps of a reference shower (N, V): its group energies (any unit)."""
        return showers @ layer_matrix(self.layer_bounds).to(showers)

    def bound_voxels(self, showers: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
        """Showers (N, V) MeV with no voxel above its cap (N, V) MeV; the base cuts the excess."""
        return torch.minimum(showers, caps)

    @torch.no_grad()
    def fit_showers(self, c_ref: torch.Tensor, fractions_ref: torch.Tensor, c_gen: torch.Tensor,
                    showers_gen: torch.Tensor, e_gen: torch.Tensor, bound: Bound | None = None) -> None:
        """Fit from reference `group_energies` / E_inc (N, G) and generated showers (M, V) MeV with E_inc (M, 1),
        with the `bound` generation will apply (see `map_showers`)."""
        raise NotImplementedError

    def map_showers(self, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor,
                    bound: Bound | None = None) -> torch.Tensor:
        """Showers (N, V) MeV with their group energies and total mapped; no data-dependent branch (graphs).

        `bound` (showers -> showers), if given, bounds the voxels after the groups and before the total (the voxel
        map's caps: scaling a cell must not lift one voxel above them; the total then restores the energy), and
        again after the total (its scale must not lift a voxel above them either)."""
        raise NotImplementedError


class NoEnergyMap(EnergyMap):
    """No map: energies as sampled."""

    @property
    def active(self) -> bool:
        return False

    @torch.no_grad()
    def fit_showers(self, c_ref, fractions_ref, c_gen, showers_gen, e_gen, bound=None) -> None:
        return


class QuantileEnergyMap(EnergyMap):
    """Per incident-energy bin: the energies of the voxel groups of each level in `groups` (e.g. each (layer, radial
    ring) cell, then each layer), one level after the other, then E_tot, each log(E / E_inc) quantile-mapped onto the
    reference's; a shower's voxels are scaled by their group's factor at each level, then by the total's."""

    def __init__(self, layer_bounds: Sequence[tuple[int, int]], groups: Sequence[str], n_bins: int, n_knots: int,
                 grid: int, margin: float, cap_margin: float, min_showers: int, samples_per_shower: int,
                 reference_showers: int, max_voxel_fraction: float = 1.0,
                 voxel_ring: Sequence[int] | None = None, min_occupancy: float = 0.0,
                 max_group_scale: float | None = None, match_occupancy: bool = False, spill: str = "none") -> None:
        levels = [groups] if isinstance(groups, str) else list(groups)
        super().__init__(layer_bounds, samples_per_shower, reference_showers, max_voxel_fraction)
        self.n_bins = int(n_bins)
        if spill not in SPILLS:
            raise ConfigError(f"model.energy_map.spill: expected one of {SPILLS}, found {spill!r}")
        self.spill = spill
        cells = voxel_groups(layer_bounds, voxel_ring, "rings")
        self.register_buffer("spill_group", cells, persistent=False)
        self.register_buffer("to_spill_groups", group_matrix(cells), persistent=False)
        if max_group_scale is not None and max_group_scale < 1:
            raise ConfigError(f"model.energy_map.max_group_scale: expected >= 1 or null, found {max_group_scale}")
        self.max_group_scale = None if max_group_scale is None else float(max_group_scale)
        table = dict(n_bins=n_bins, n_knots=n_knots, grid=grid, margin=margin, min_hits=min_showers,
                     samples_per_shower=0, reference_showers=0, cap_margin=cap_margin, min_hit_fraction=min_occupancy,
                     match_occupancy=match_occupancy)
        level_groups = [voxel_groups(layer_bounds, voxel_ring, level) for level in levels if level != "none"]
        self.levels = [level for level in levels if level != "none"]
        for i, group in enumerate(level_groups):
            self.register_buffer(f"voxel_group_{i}", group, persistent=False)
            self.register_buffer(f"to_groups_{i}", group_matrix(group), persistent=False)
        self.level_maps = nn.ModuleList(QuantileVoxelMap(int(g.max()) + 1, **table) for g in level_groups)
        self.total_map = QuantileVoxelMap(1, **table)
        # the reference: every level's group energies side by side, then the total
        n_vox = self.layer_bounds[-1][1]
        self.register_buffer("to_reference", torch.cat([*(self._matrix(i) for i in range(len(self.levels))),
                                                        torch.ones(n_vox, 1)], dim=1), persistent=False)

    def group_energies(self, showers: torch.Tensor) -> torch.Tensor:
        return showers @ self.to_reference

    def _matrix(self, level: int) -> torch.Tensor:
        return getattr(self, f"to_groups_{level}")

    def _split(self, energies: torch.Tensor) -> list[torch.Tensor]:
        sizes = [self._matrix(i).shape[1] for i in range(len(self.levels))] + [1]
        return list(torch.split(energies, sizes, dim=1))

    @torch.no_grad()
    def fit_showers(self, c_ref: torch.Tensor, fractions_ref: torch.Tensor, c_gen: torch.Tensor,
                    showers_gen: torch.Tensor, e_gen: torch.Tensor, bound: Bound | None = None) -> None:
        """Fit level by level: reference group fractions (N, G) as `group_energies` / E_inc gives them, and
        generated showers (M, V) MeV with their E_inc (M, 1); each level is fitted to the showers the levels
        before it produce, as generation applies them."""
        refs = self._split(fractions_ref)
        bins = condition_bin(c_gen, self.n_bins)
        for i, vmap in enumerate(self.level_maps):
            vmap.fit(c_ref, refs[i], c_gen, (showers_gen @ self._matrix(i)) / e_gen)
            showers_gen = self._apply_level(i, showers_gen, e_gen, bins)
        if bound is not None:
            showers_gen = bound(showers_gen)
        self.total_map.fit(c_ref, refs[-1], c_gen, showers_gen.sum(dim=1, keepdim=True) / e_gen)
        self.fitted.fill_(True)

    def bound_voxels(self, showers: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
        """Showers (N, V) MeV with no voxel above its cap (N, V) MeV, the excess moved to the voxels of the same
        (layer, radial ring) cell that are below their caps (`spill`: "hits" only to voxels already hit, "cell" to
        any, so that new hits may appear), in proportion to each one's room; what the cell has no room for is cut.

        Why: the decoder puts some of the outer energy of low-energy showers into too few, too large hits, and the
        caps cut it. Moved within its cell, it stays in its layer and ring, and no voxel passes its cap (room <= cap
        - voxel). Measured (docs/vae.md): "cell" brings the 1-3 GeV hit fraction and ring 4 closer to Geant4; the
        ring deficit itself came mostly from fitting the map to too few showers. Sums by matmul (exports to every
        runtime), no branch.
        """
        capped = torch.minimum(showers, caps)
        if self.spill == "none":
            return capped
        room = caps - capped
        if self.spill == "hits":
            room = room * (capped > 0)
        excess = (showers - capped) @ self.to_spill_groups
        share = (excess / (room @ self.to_spill_groups).clamp_min(1e-30)).clamp_(max=1.0)
        return capped.addcmul_(room, share.index_select(1, self.spill_group))

    def _apply_level(self, i: int, showers: torch.Tensor, e_inc: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """Showers with level i's group energies mapped (empty groups stay empty)."""
        frac = (showers @ self._matrix(i)) / e_inc
        hit = frac > 0
        safe = torch.where(hit, frac, torch.ones_like(frac))
        mapped_log = self.level_maps[i].map_log(torch.log(safe), bins)
        scale = torch.where(hit, mapped_log.exp() / safe, torch.ones_like(frac))
        if self.max_group_scale is not None:  # a group's rank moves its energy, it does not turn a stray hit into a core
            scale = scale.clamp(1.0 / self.max_group_scale, self.max_group_scale)
        # a group mapped to the reference's empty share (match_occupancy) is emptied, whatever max_group_scale says
        scale = torch.where(mapped_log <= EMPTY_LOG, torch.zeros_like(scale), scale)
        return showers * scale.index_select(1, getattr(self, f"voxel_group_{i}"))

    def map_showers(self, showers, e_inc, c, bound=None):
        bins = condition_bin(c, self.n_bins)
        for i in range(len(self.levels)):
            showers = self._apply_level(i, showers, e_inc, bins)
        if bound is not None:
            showers = bound(showers)
        total = showers.sum(dim=1, keepdim=True) / e_inc
        some = total > 0
        safe_total = torch.where(some, total, torch.ones_like(total))
        total_scale = torch.where(some, self.total_map.map_log(torch.log(safe_total), bins).exp() / safe_total,
                                  torch.ones_like(total))
        showers = showers * total_scale
        if bound is not None:
            # the total's scale must not lift a capped voxel past its cap either: a 13.7 GeV shower whose core the
            # caps had cut got 1.7x, 2.1x Geant4's largest voxel. Such rare showers keep a little less than their total.
            showers = bound(showers)
        return torch.minimum(showers, e_inc * self.max_voxel_fraction)
