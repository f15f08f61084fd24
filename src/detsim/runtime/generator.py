"""`ShowerGenerator`: a trained VAE's generation as one plain module, incident energies (MeV) -> showers (MeV).

It holds the decoder (trunk + voxel head), the latent prior, the energy condition, the readout threshold, the
optional energy rescaling, the voxel map, the energy map and the voxel bound, and runs them: prior -> decoder ->
head sampler -> energy rescaling -> voxel map (each voxel capped at max_voxel_fraction x E_inc) -> readout
threshold -> energy map (layer energies, total) -> readout threshold. This is what `detsim-generate` runs, what
`detsim-export` traces and what is logged to MLflow as the model. It knows the parts by what they do (the
decoder's `sampling_params`, the head's `sample`, the prior's `draw` / `transform`, the maps' `map_log` /
`map_showers`), never by class, so the runtime stands below the model that builds it (docs/architecture.md).

Three entry points compute the same showers, with one formula:
- `forward(incident_energy, rng)`: eager generation. Every random number comes from the torch.Generator `rng`
  (latent draws for all rows first, then the per-voxel uniforms of the whole batch, `uniforms.py`); the rows
  run in blocks that stay in cache, in place, and the voxel map takes its rows bin by bin;
- `draw(n, rng)`: those random numbers by name, in that order;
- `from_draws(incident_energy, draws)`: the whole batch from given random numbers, out of place, with no
  data-dependent branch: the graph that torch.compile compiles and `detsim-export` writes (`graph.py`).
For the same numbers, `forward` and `from_draws` agree bit for bit on one thread.

Why blocks: a block's head output (rows x 3 x V floats, 9 MB for ds1 at 2048) and temporaries stay in
L2/L3 across the ~20 elementwise passes instead of streaming N x V arrays through memory each time. Rows are
independent and the uniforms are drawn for the whole batch before, so on one thread the numbers equal the
whole-batch ones bit for bit as long as blocks start at multiples of 256 rows (the matmul kernel's row panels
stay aligned; other offsets move roundings in ~1e-4 of the voxels). 2048 was fastest on one thread. With
several threads every op is a parallel region whose barrier, on a shared machine, waits for a descheduled
thread: there the whole batch is one block (measured: 2048-row blocks 4x slower on 2 busy cores).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.runtime.uniforms import draw_uniforms

# none: keep sampled energies | total / layers: rescale each sampled shower (each layer) to the decoder's mean
CALIBRATIONS = ("none", "total", "layers")
BLOCK_ROWS = 2048


class ShowerGenerator(nn.Module):
    """Incident energies (N,) MeV -> showers (N, V) MeV, >= 0 and zero below the readout threshold.

    decoder: a `models.vae.layers.ShowerDecoder`; prior: a `LatentPrior`; condition: an `EnergyCondition`;
    voxel_map: a `VoxelMap`; energy_map: an `EnergyMap` (`CaloVAE` builds them from its config).
    """

    def __init__(self, decoder: nn.Module, prior: nn.Module, condition: Any, threshold_mev: float, calibration: str,
                 layer_bounds: Sequence[tuple[int, int]], voxel_map: nn.Module, energy_map: nn.Module,
                 max_voxel_fraction: float = 1.0):
        super().__init__()
        if not max_voxel_fraction > 0:
            raise ConfigError(f"model.max_voxel_fraction: expected > 0, found {max_voxel_fraction}")
        if calibration not in CALIBRATIONS:
            raise ConfigError(f"model.calibration: expected one of {CALIBRATIONS}, found {calibration!r}")
        self.decoder, self.prior, self.condition = decoder, prior, condition
        self.threshold_mev = float(threshold_mev)
        self.calibration = calibration
        self.layer_bounds = [tuple(b) for b in layer_bounds]
        self.n_voxels = int(layer_bounds[-1][1])
        self.voxel_map, self.energy_map = voxel_map, energy_map
        #: log of the largest E_voxel / E_inc a generated voxel may have (a bound, not a fit: energy conservation)
        self.log_max_voxel_fraction = math.log(max_voxel_fraction)

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # --- the three entry points ---------------------------------------------------------------
    def forward(self, incident_energy: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Showers (N, V) MeV, every random number from `rng`; decoded and sampled (on one thread) in row blocks
        that stay in cache, in place when no autograd graph is recorded (`detsim-generate` runs in inference mode)."""
        e_inc = incident_energy.reshape(-1).to(torch.float32)
        c = self.condition.forward(e_inc)
        z = self.prior.sample(c, rng)  # all latent draws first: the random stream stays in order
        head = self.decoder.head
        lower = head.lower_log_fraction(self.threshold_mev, e_inc)
        showers = torch.empty(len(e_inc), self.n_voxels, device=z.device, dtype=z.dtype)
        block = BLOCK_ROWS if torch.get_num_threads() == 1 else max(len(e_inc), 1)
        reuse = not torch.is_grad_enabled()
        map_active, energy_active = self.voxel_map.active, self.energy_map.active
        uniforms = None
        if head.uniforms_per_voxel:  # the whole batch's, drawn in place into `showers` where the sampler may overwrite them
            in_place = reuse and head.uniforms_per_voxel == 1 and showers.device.type == "cpu"
            uniforms = draw_uniforms(len(e_inc), self.n_voxels * head.uniforms_per_voxel, rng, z.device,
                                     out=showers if in_place else None)
        for start in range(0, len(e_inc), block):
            rows = slice(start, start + block)
            out = showers[rows]
            sample = self._sample_rows(z[rows], c[rows], e_inc[rows].reshape(-1, 1),
                                       None if lower is None else lower[rows],
                                       None if uniforms is None else uniforms[rows],
                                       reuse, True, map_active, energy_active)
            if not reuse and block >= len(e_inc):
                return sample  # one block, out of place (autograd on): the batch itself, no copy
            if sample.data_ptr() != out.data_ptr():
                out.copy_(sample)
        return showers

    def draw(self, n: int, rng: torch.Generator | None = None,
             device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The random numbers `forward` draws for `n` showers, by name, in its order: the prior's, then "uniform"
        (n, V) (on the generator's device unless `device` is given)."""
        device = self._device() if device is None else device
        draws = self.prior.draw(n, rng, device)
        per_voxel = self.decoder.head.uniforms_per_voxel
        if per_voxel:
            draws["uniform"] = draw_uniforms(n, self.n_voxels * per_voxel, rng, device)
        return draws

    def from_draws(self, incident_energy: torch.Tensor, draws: dict[str, torch.Tensor],
                   map_active: bool | None = None, energy_active: bool | None = None,
                   rows_by_bin: bool = False) -> torch.Tensor:
        """Showers (N, V) MeV from the random numbers `draw` names; whole batch, inputs left untouched.

        map_active / energy_active: whether the voxel map / the energy map apply (None: ask them; a graph fixes
        them beforehand, since reading a map's `fitted` buffer would be a data-dependent branch).
        rows_by_bin: order the rows by the voxel map's bin and back (`_rows_by_bin`; what torch.compile runs).
        """
        e_inc = incident_energy.reshape(-1).to(torch.float32)
        c = self.condition.forward(e_inc)
        z = self.prior.transform(c, draws)
        lower = self.decoder.head.lower_log_fraction(self.threshold_mev, e_inc)
        vmap = self.voxel_map.active if map_active is None else map_active
        energy = self.energy_map.active if energy_active is None else energy_active
        uniform = draws.get("uniform")
        if rows_by_bin and vmap and self.voxel_map.tables_per_bin and z.shape[0] > 1:
            return self._rows_by_bin(z, c, e_inc.reshape(-1, 1), lower, uniform, energy)
        return self._sample_rows(z, c, e_inc.reshape(-1, 1), lower, uniform, False, False, vmap, energy)

    # --- the formula ------------------------------------------------------------------------------
    def _sample_rows(self, z: torch.Tensor, c: torch.Tensor, e_inc: torch.Tensor, lower: torch.Tensor | None,
                     uniform: torch.Tensor | None, reuse: bool, by_bin: bool, map_active: bool,
                     energy_active: bool) -> torch.Tensor:
        """Decoder, sampling, rescaling, voxel map, energy map and threshold for rows of latent points z (N, d).

        reuse=True: the sampler may overwrite the decoder output and `uniform`, and the result may live there.
        by_bin=True: the voxel map may take the rows bin by bin (eager only; the same numbers).
        """
        head = self.decoder.head
        out = self.decoder.sampling_params(z, c)
        vmap = self.voxel_map
        cap = self.log_max_voxel_fraction
        if self.calibration == "none" and head.fused_sampler:
            if map_active:
                bins = vmap.bins(c)
                log_map = lambda y: vmap.map_log(y, bins, by_bin).clamp_(max=cap)  # noqa: E731
            else:
                log_map = lambda y: y.clamp_(max=cap)  # noqa: E731
            showers = apply_threshold(head.sample(out, lower, uniform, e_inc, reuse=reuse, log_map=log_map),
                                      self.threshold_mev, inplace=reuse)
            return self._map_energies(showers, e_inc, c, map_active, energy_active)
        # rescaling needs the decoder output intact after sampling
        frac = head.sample(out, lower, uniform, reuse=reuse and self.calibration == "none")
        if self.calibration != "none":
            groups = [(0, self.n_voxels)] if self.calibration == "total" else self.layer_bounds
            frac = rescale_energy(frac, head.mean_fraction(out), groups)
        frac = frac.clamp_(max=math.exp(cap)) if reuse else frac.clamp(max=math.exp(cap))
        showers = apply_threshold(frac * e_inc, self.threshold_mev, inplace=reuse)  # every head returns fractions >= 0
        if map_active:  # the map can move a hit below the threshold: cut again
            showers = apply_threshold(vmap.map_showers(showers, e_inc, c, by_bin), self.threshold_mev, inplace=reuse)
        return self._map_energies(showers, e_inc, c, map_active, energy_active)

    def _map_energies(self, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor, map_active: bool,
                      energy_active: bool) -> torch.Tensor:
        """The energy map (group energies, the voxel map's bounds again: scaling a group may lift one voxel above
        what the voxel map allows, then the total), then the threshold again (scaling can move a hit below it)."""
        if not energy_active:
            return showers
        bound = self.group_bound(e_inc, c, map_active)
        return apply_threshold(self.energy_map.map_showers(showers, e_inc, c, bound), self.threshold_mev, inplace=True)

    def group_bound(self, e_inc: torch.Tensor, c: torch.Tensor, map_active: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """What the energy map applies between the group levels and the total (and its fit, to the showers it
        fits the total to): the voxel map's caps, then the readout threshold.

        Why the threshold here: a group scaled down can move hits below the threshold; cut after the total,
        they took their energy out of a total already mapped (E_tot / E_inc 3 % low on a short training).
        """
        caps = self.voxel_map.voxel_caps(e_inc, c) if map_active else None
        if caps is not None:
            return lambda s: apply_threshold(self.energy_map.bound_voxels(s, caps), self.threshold_mev, inplace=False)
        return lambda s: apply_threshold(s, self.threshold_mev, inplace=False)

    def _rows_by_bin(self, z: torch.Tensor, c: torch.Tensor, e_inc: torch.Tensor, lower: torch.Tensor | None,
                     uniform: torch.Tensor | None, energy_active: bool) -> torch.Tensor:
        """`_sample_rows` (out of place, map on) with the rows ordered by the map's bin and put back after.

        Why: the quantile map gathers from per-bin tables (15 bins x 2 tables x 188 kB for ds1, beyond L2);
        rows of one bin in a row keep one bin's tables in cache. Under torch.compile the reordering of the big
        arrays costs an indexed row load of the uniforms and a row scatter of the result (measured: the compiled
        ds1 batch of 10,000 3.8 ms faster, 8 %; docs/studies/2026-11-30-generation-speed.md). Rows are
        independent, so each row's shower is the unsorted one up to the matmul's rounding.
        """
        order = torch.argsort(self.voxel_map.bins(c), stable=True)
        pick = lambda x: None if x is None else x.index_select(0, order)  # noqa: E731
        rows = self._sample_rows(pick(z), pick(c), pick(e_inc), pick(lower), pick(uniform), False, False, True,
                                 energy_active)
        return torch.empty_like(rows).index_copy_(0, order, rows)


def rescale_energy(sample: torch.Tensor, mean: torch.Tensor, groups: list[tuple[int, int]]) -> torch.Tensor:
    """Rescale each sampled shower's voxel groups (the whole shower, or each layer) to the decoder's expectation."""
    parts = []
    for a, b in groups:
        got = sample[:, a:b].sum(dim=1, keepdim=True)
        want = mean[:, a:b].sum(dim=1, keepdim=True)
        parts.append(sample[:, a:b] * torch.where(got > 0, want / got.clamp_min(1e-30), torch.ones_like(got)))
    return torch.cat(parts, dim=1)


def apply_threshold(showers: torch.Tensor, threshold_mev: float, inplace: bool = True) -> torch.Tensor:
    """Zero voxels below the readout threshold.

    F.threshold zeroes x <= t in one vectorised pass (masked_fill_ is ~10x slower on CPU); t is the float32
    just below the threshold, so exactly the voxels with x < threshold are zeroed.
    """
    if threshold_mev <= 0:
        return showers
    below = float(np.nextafter(np.float32(threshold_mev), np.float32(-np.inf)))
    return (nn.functional.threshold_ if inplace else nn.functional.threshold)(showers, below, 0.0)
