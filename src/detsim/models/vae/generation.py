"""The generation runtime: prior -> decoder -> head sampler -> energy rescaling -> voxel map (each voxel capped at
max_voxel_fraction x E_inc) -> readout threshold -> energy map (layer energies, total) -> readout threshold.

Two entry points compute the same showers:
- `generate`: draws every random number from one torch.Generator (latent draws for all rows first, then
  the per-voxel uniforms of the whole batch from the generator's stream, `uniforms.py`) and runs in row
  blocks that stay in cache, in place;
- `generate_from_draws`: takes the random numbers as tensors (`draw` makes them in the same order) and runs
  the whole batch out of place, with no data-dependent branching: the graph `detsim-export` writes.

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
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from detsim.models.vae.graph_mode import compiling, in_graph
from detsim.models.vae.heads import lower_log_fraction
from detsim.models.vae.transforms import condition_bin
from detsim.models.vae.uniforms import draw_uniforms

if TYPE_CHECKING:
    from detsim.models.vae.generator import ShowerGenerator

BLOCK_ROWS = 2048


def draw(gen: ShowerGenerator, n: int, generator: torch.Generator | None = None,
         device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """All random numbers of `n` showers, in `generate`'s stream order: the prior's, then "uniform" (n, V)."""
    draws = gen.prior.draw(n, generator, device)
    if gen.decoder.head.uniforms_per_voxel:
        draws["uniform"] = draw_uniforms(n, gen.n_voxels * gen.decoder.head.uniforms_per_voxel, generator,
                                         gen.random_stream, device)
    return draws


def generate(gen: ShowerGenerator, incident_energy: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Showers (N, V) MeV, decoded and sampled (on one thread) in row blocks that stay in cache."""
    e_inc = incident_energy.reshape(-1).to(torch.float32)
    c = gen.condition.forward(e_inc)
    z = gen.prior.sample(c, generator)  # all latent draws first: the random stream stays in order
    lower = lower_log_fraction(gen.threshold_mev, e_inc)
    showers = torch.empty(len(e_inc), gen.n_voxels, device=z.device, dtype=z.dtype)
    n_uniform = gen.decoder.head.uniforms_per_voxel
    block = BLOCK_ROWS if torch.get_num_threads() == 1 else max(len(e_inc), 1)
    # in place needs no autograd graph (generate.py runs in inference mode); a compiled graph fuses the passes
    # itself, and in-place writes into the decoder output would make it copy that output first
    reuse = not torch.is_grad_enabled() and not in_graph()
    map_active, energy_active = gen.voxel_map.active, gen.energy_map.active
    uniforms = None
    if n_uniform:  # the whole batch's, drawn in place into `showers` where the sampler may overwrite them
        width = gen.n_voxels * n_uniform
        in_place = reuse and n_uniform == 1 and showers.device.type == "cpu"
        uniforms = draw_uniforms(len(e_inc), width, generator, gen.random_stream, z.device,
                                 out=showers if in_place else None)
    for start in range(0, len(e_inc), block):
        rows = slice(start, start + block)
        out = showers[rows]
        uniform = None if uniforms is None else uniforms[rows]
        sample = sample_block(gen, z[rows], c[rows], e_inc[rows].reshape(-1, 1),
                              None if lower is None else lower[rows], uniform, reuse, map_active, energy_active)
        if not reuse and block >= len(e_inc):
            return sample  # one block, out of place (a compiled graph): the batch itself, no copy
        if sample.data_ptr() != out.data_ptr():
            out.copy_(sample)
    return showers


def generate_from_draws(gen: ShowerGenerator, incident_energy: torch.Tensor, draws: dict[str, torch.Tensor],
                        map_active: bool | None = None, energy_active: bool | None = None) -> torch.Tensor:
    """Showers (N, V) MeV from the random numbers `draw` names; whole batch, inputs left untouched.

    map_active / energy_active: whether the voxel map / the energy map apply (None: ask them; a graph exporter
    fixes them beforehand, since reading a map's `fitted` buffer would be a data-dependent branch)."""
    e_inc = incident_energy.reshape(-1).to(torch.float32)
    c = gen.condition.forward(e_inc)
    z = gen.prior.transform(c, draws)
    lower = lower_log_fraction(gen.threshold_mev, e_inc)
    active = gen.voxel_map.active if map_active is None else map_active
    energy = gen.energy_map.active if energy_active is None else energy_active
    return sample_block(gen, z, c, e_inc.reshape(-1, 1), lower, draws.get("uniform"), False, active, energy)


def sample_block(gen: ShowerGenerator, z: torch.Tensor, c: torch.Tensor, e_inc: torch.Tensor,
                 lower: torch.Tensor | None, uniform: torch.Tensor | None, reuse: bool, map_active: bool,
                 energy_active: bool) -> torch.Tensor:
    """Decoder, sampling, rescaling, voxel map, energy map and threshold for rows of latent points z (N, d).

    reuse=True: the sampler may overwrite the decoder output and `uniform`, and the result may live there.
    """
    if map_active and gen.voxel_map.tables_per_bin and compiling() and z.shape[0] > 1:
        return _rows_by_bin(gen, z, c, e_inc, lower, uniform, energy_active)
    return _sample_rows(gen, z, c, e_inc, lower, uniform, reuse, map_active, energy_active)


def _sample_rows(gen: ShowerGenerator, z: torch.Tensor, c: torch.Tensor, e_inc: torch.Tensor,
                 lower: torch.Tensor | None, uniform: torch.Tensor | None, reuse: bool, map_active: bool,
                 energy_active: bool) -> torch.Tensor:
    """`sample_block` in the rows' own order."""
    head = gen.decoder.head
    out = gen.decoder(z, c)
    vmap = gen.voxel_map
    cap = gen.log_max_voxel_fraction
    if gen.calibration == "none" and head.fused_sampler:
        bins = condition_bin(c, vmap.n_bins) if map_active else None
        log_map = (lambda y: vmap.map_log(y, bins).clamp_(max=cap)) if map_active else (lambda y: y.clamp_(max=cap))
        showers = apply_threshold(head.sample(out, lower, uniform, e_inc, reuse=reuse, log_map=log_map),
                                  gen.threshold_mev, inplace=reuse)
        return _map_energies(gen, showers, e_inc, c, reuse, energy_active)
    # rescaling needs the decoder output intact after sampling
    frac = head.sample(out, lower, uniform, reuse=reuse and gen.calibration == "none")
    if gen.calibration != "none":
        groups = [(0, gen.n_voxels)] if gen.calibration == "total" else gen.layer_bounds
        frac = rescale_energy(frac, head.mean_fraction(out), groups)
    frac = frac.clamp_(max=math.exp(cap)) if reuse else frac.clamp(max=math.exp(cap))
    showers = apply_threshold(frac * e_inc, gen.threshold_mev, inplace=reuse)  # every head returns fractions >= 0
    if map_active:  # the map can move a hit below the threshold: cut again
        showers = apply_threshold(vmap.map_showers(showers, e_inc, c), gen.threshold_mev, inplace=reuse)
    return _map_energies(gen, showers, e_inc, c, reuse, energy_active)


def _map_energies(gen: ShowerGenerator, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor, reuse: bool,
                  energy_active: bool) -> torch.Tensor:
    """The energy map (layer energies and total), then the threshold again (scaling can move a hit below it)."""
    if not energy_active:
        return showers
    return apply_threshold(gen.energy_map.map_showers(showers, e_inc, c), gen.threshold_mev, inplace=True)


def _rows_by_bin(gen: ShowerGenerator, z: torch.Tensor, c: torch.Tensor, e_inc: torch.Tensor,
                 lower: torch.Tensor | None, uniform: torch.Tensor | None, energy_active: bool) -> torch.Tensor:
    """`sample_block` (out of place, map on) with the rows ordered by condition bin and put back after.

    Why: the quantile map gathers from per-bin tables (15 bins x 2 tables x 188 kB for ds1, beyond L2);
    rows of one bin in a row keep one bin's tables in cache. Under torch.compile the reordering of the big
    arrays costs an indexed row load of the uniforms and a row scatter of the result (measured: the compiled
    ds1 batch of 10,000 3.8 ms faster, 8 %; docs/studies/2026-11-30-generation-speed.md). Rows are
    independent, so each row's shower is the unsorted one up to the matmul's rounding.
    """
    order = torch.argsort(condition_bin(c, gen.voxel_map.n_bins), stable=True)
    pick = lambda x: None if x is None else x.index_select(0, order)  # noqa: E731
    rows = _sample_rows(gen, pick(z), pick(c), pick(e_inc), pick(lower), pick(uniform), False, True, energy_active)
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
