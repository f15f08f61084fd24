"""The per-voxel quantile map: post-hoc, each voxel's energy distribution per incident-energy bin is
mapped onto the reference's (config group `model/vae/voxel_map`).

Why: a VAE's decoder gets the *shape* of a shower right (which voxels fire together, how energy moves
between layers) but the energy of one voxel, marginalised over the latent space, comes out slightly too
wide or too narrow. A classifier fed raw voxel energies sees those small per-voxel shifts across all 368
voxels at once. Mapping every generated hit energy through the generator's own CDF and then through the
reference's inverse CDF (quantile mapping, per voxel and incident-energy bin) makes each voxel's marginal
match the reference while keeping the rank order, and with it the correlations, the decoder produced.

`QuantileVoxelMap` is that map, stored as a table on a uniform grid of log(E_voxel / E_inc) so generation
needs a gather and a lerp per voxel; `AffineVoxelMap` only matches the mean and width of log(E_voxel / E_inc)
(a scale and a shift per voxel; measured worse than no map, kept for comparison). Hit probabilities are left as the decoder made them.
Voxels with fewer than `min_hits` hits in a bin (reference or generated) keep their energies.
`IdentityVoxelMap` leaves every shower as the decoder made it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.models.vae.fitted import FittedMap
from detsim.models.vae.transforms import condition_bin

# log(E_voxel / E_inc) range an identity row of the table covers: fractions from 4e-18 (far below any
# readout threshold) to e^5 (a voxel cannot hold more than the incident energy)
IDENTITY_RANGE = (-40.0, 5.0)


def log_hits(x: torch.Tensor, fill: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log x where x > 0 and `fill` elsewhere, the hit mask, hits per column) of fractions (N, V)."""
    x = x.detach().double()
    hits = x > 0
    logs = torch.where(hits, torch.log(torch.where(hits, x, torch.ones_like(x))), torch.full_like(x, fill))
    return logs, hits, hits.sum(dim=0)


def _column_quantiles(x: torch.Tensor, n_knots: int, ranks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel: `n_knots` evenly spaced quantiles (n_knots, V) of log(x) over its hits (x > 0), and hit counts;
    or, given `ranks` (n_knots, V) in [0, 1], the quantiles at those ranks of each column.

    Vectorised over voxels: empty voxels become +inf, so a column sort puts them last and the quantile
    positions of column v only reach its hits (linear interpolation, as numpy's default).
    """
    logs, _, count = log_hits(x, math.inf)
    if x.shape[0] == 0:
        return np.zeros((n_knots, x.shape[1])), count.cpu().numpy()
    ordered = torch.sort(logs, dim=0).values
    last = (count - 1).clamp_min(0).to(torch.float64)
    if ranks is None:
        ranks = torch.linspace(0.0, 1.0, n_knots, dtype=torch.float64, device=x.device)[:, None]
    else:
        ranks = torch.as_tensor(ranks, dtype=torch.float64, device=x.device)
    pos = ranks * last[None, :]
    low = pos.floor().long()
    high = torch.minimum(low + 1, last.long()[None, :])
    q = torch.lerp(ordered.gather(0, low), ordered.gather(0, high), pos - low)
    return torch.nan_to_num(q, posinf=0.0, neginf=0.0).cpu().numpy(), count.cpu().numpy()


def _column_moments(x: torch.Tensor) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Per voxel: (mean, std) of log(x) over its hits, and hit counts."""
    logs, hits, count = log_hits(x, 0.0)
    n = count.clamp_min(1)
    mean = logs.sum(dim=0) / n
    var = torch.where(hits, (logs - mean) ** 2, torch.zeros_like(logs)).sum(dim=0) / n
    return (mean.cpu().numpy(), var.sqrt().cpu().numpy()), count.cpu().numpy()


def _identity_rows(n_rows: int, n_grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(offset, inv_step, table, step) of `n_rows` table rows that map every y in IDENTITY_RANGE to itself."""
    lo, hi = IDENTITY_RANGE
    inv = (max(n_grid, 2) - 1) / (hi - lo)
    y = lo + np.arange(n_grid) / inv
    step = np.zeros(n_grid)
    step[:-1] = np.diff(y)
    return (np.full(n_rows, -lo * inv), np.full(n_rows, inv), np.tile(y, (n_rows, 1)), np.tile(step, (n_rows, 1)))


def _steps(table: np.ndarray) -> np.ndarray:
    """table[..., m + 1] - table[..., m] along the grid (0 at the last point): the lerp slopes of `map_log`."""
    step = np.zeros_like(table)
    step[..., :-1] = np.diff(table, axis=-1)
    return step


def _capped_identity(cap: np.ndarray, n_grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inv_step, offset, table) of rows mapping y to itself from IDENTITY_RANGE's start up to `cap` (V,),
    clamped there."""
    lo = IDENTITY_RANGE[0]
    cap = np.maximum(cap, lo + 1.0)
    inv = (n_grid - 1) / (cap - lo)
    table = lo + np.arange(n_grid)[None, :] / inv[:, None]
    return inv, -lo * inv, table


class VoxelMap(FittedMap):
    """Base: maps generated voxel fractions E_voxel / E_inc so their per-voxel distribution matches a reference.

    Built as `Map(n_voxels, **config)`. The generator draws `samples_per_shower` showers per reference
    shower for a fit; training keeps up to `reference_showers` validation showers as the reference.
    """

    #: True if the map gathers from tables too large for cache per bin: compiled generation then orders rows by bin
    tables_per_bin: bool = False

    def __init__(self, n_voxels: int, n_bins: int = 1, min_hits: int = 0, samples_per_shower: int = 0,
                 reference_showers: int = 0) -> None:
        super().__init__()
        if n_bins < 1:
            raise ConfigError(f"model.voxel_map.n_bins: expected >= 1, found {n_bins}")
        self.n_voxels, self.n_bins = int(n_voxels), int(n_bins)
        self.min_hits, self.samples_per_shower = int(min_hits), int(samples_per_shower)
        self.reference_showers = int(reference_showers)

    def bins(self, c: torch.Tensor) -> torch.Tensor:
        """The map's incident-energy bin (N,) of conditions c (N, 1)."""
        return condition_bin(c, self.n_bins)

    @torch.no_grad()
    def fit(self, c_ref: torch.Tensor, x_ref: torch.Tensor, c_gen: torch.Tensor, x_gen: torch.Tensor) -> None:
        """Fit from reference and generated fractions (N, V) with their conditions (N,); zeros are empty voxels.

        Voxels (or whole bins) with fewer than `min_hits` hits on either side get the identity map.
        """
        b_ref, b_gen = condition_bin(c_ref, self.n_bins), condition_bin(c_gen, self.n_bins)
        self._store(self._fit_bins([(x_ref[b_ref == b], x_gen[b_gen == b]) for b in range(self.n_bins)]))

    def _store(self, values: dict[str, np.ndarray]) -> None:
        """Copy fitted buffer values into the map and mark it fitted."""
        for name, value in values.items():
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32, device=self.fitted.device))
        self.fitted.fill_(True)

    def _fit_bins(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, np.ndarray]:
        """Buffer values from (reference, generated) fractions of each bin."""
        raise NotImplementedError

    def map_log(self, y: torch.Tensor, bins: torch.Tensor, by_bin: bool = False) -> torch.Tensor:
        """Mapped log fractions for log fractions y (N, V) of rows in condition bins `bins` (N,); may overwrite y.

        by_bin=True lets the map take the rows bin by bin (a loop over the bins present: eager generation only,
        a graph has no data-dependent loop); the numbers are the same either way.
        """
        raise NotImplementedError

    def forward(self, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Mapped showers (N, V) MeV from showers (N, V) MeV, E_inc (N, 1) MeV and conditions (N,).

        Empty voxels stay empty; the caller applies the readout threshold again afterwards.
        """
        return self.map_showers(showers, e_inc, c) if self.active else showers

    def voxel_caps(self, e_inc: torch.Tensor, c: torch.Tensor) -> torch.Tensor | None:
        """(N, V) MeV: the largest energy the map lets each voxel of these showers have (None: unbounded)."""
        return None

    def cap_showers(self, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Showers (N, V) MeV with each voxel bounded as the map bounds it (`voxel_caps`)."""
        caps = self.voxel_caps(e_inc, c)
        return showers if caps is None else torch.minimum(showers, caps)

    def map_showers(self, showers: torch.Tensor, e_inc: torch.Tensor, c: torch.Tensor,
                    by_bin: bool = False) -> torch.Tensor:
        """`forward` without asking whether the map is fitted (no data-dependent branch, for graphs)."""
        hit = showers > 0
        y = torch.log(torch.where(hit, showers, e_inc) / e_inc)  # empty voxels: log 1 (masked below)
        return self.map_log(y, self.bins(c), by_bin).exp_().mul_(e_inc).mul_(hit)


class IdentityVoxelMap(VoxelMap):
    """No map: showers stay as the decoder made them."""

    @property
    def active(self) -> bool:
        return False

    @torch.no_grad()
    def fit(self, c_ref, x_ref, c_gen, x_gen) -> None:
        return


class AffineVoxelMap(VoxelMap):
    """y -> slope * y + shift per voxel and bin, matching mean and width of log(E_voxel / E_inc) over hits."""

    def __init__(self, n_voxels: int, n_bins: int, min_hits: int, samples_per_shower: int,
                 reference_showers: int) -> None:
        super().__init__(n_voxels, n_bins, min_hits, samples_per_shower, reference_showers)
        self.register_buffer("slope", torch.ones(self.n_bins, n_voxels))
        self.register_buffer("shift", torch.zeros(self.n_bins, n_voxels))

    def _fit_bins(self, pairs):
        slope, shift = np.ones((self.n_bins, self.n_voxels)), np.zeros((self.n_bins, self.n_voxels))
        for b, (ref, gen) in enumerate(pairs):
            (mr, sr), nr = _column_moments(ref)
            (mg, sg), ng = _column_moments(gen)
            ok = (nr >= self.min_hits) & (ng >= self.min_hits)
            slope[b] = np.where(ok, sr / np.maximum(sg, 1e-12), 1.0)
            shift[b] = np.where(ok, mr - slope[b] * mg, 0.0)
        return {"slope": slope, "shift": shift}

    def map_log(self, y: torch.Tensor, bins: torch.Tensor, by_bin: bool = False) -> torch.Tensor:
        return y.mul_(self.slope[bins]).add_(self.shift[bins])


class QuantileVoxelMap(VoxelMap):
    """Quantile map per voxel and bin, tabulated on a uniform grid of log(E_voxel / E_inc).

    table[b, v, m] = mapped log fraction at grid point m, where the grid coordinate of a log fraction y
    is t = y * inv_step[b, v] + offset[b, v]; `n_knots` quantiles per voxel are fitted, the grid has `grid`
    points and reaches `margin` spans beyond the generated range (slope 1 there, clamped beyond).
    """

    tables_per_bin = True

    def __init__(self, n_voxels: int, n_bins: int, n_knots: int, grid: int, margin: float, min_hits: int,
                 samples_per_shower: int, reference_showers: int, cap_margin: float | None = None,
                 min_hit_fraction: float = 0.0, match_occupancy: bool = False) -> None:
        super().__init__(n_voxels, n_bins, min_hits, samples_per_shower, reference_showers)
        self.min_hit_fraction = float(min_hit_fraction)
        self.match_occupancy = bool(match_occupancy)
        if grid < 2 or n_knots < 2:
            raise ConfigError(f"model.voxel_map: need grid >= 2 and n_knots >= 2 (found {grid}, {n_knots})")
        if cap_margin is not None and cap_margin < 0:
            raise ConfigError(f"model.voxel_map.cap_margin: expected >= 0 or null, found {cap_margin}")
        self.n_knots, self.margin = int(n_knots), float(margin)
        self.cap_margin = None if cap_margin is None else float(cap_margin)
        n_grid = int(grid)
        offset, inv_step, table, step = _identity_rows(self.n_bins * n_voxels, n_grid)
        shape = (self.n_bins, n_voxels)
        self.register_buffer("offset", torch.as_tensor(offset.reshape(shape), dtype=torch.float32))
        self.register_buffer("inv_step", torch.as_tensor(inv_step.reshape(shape), dtype=torch.float32))
        self.register_buffer("table", torch.as_tensor(table.reshape(*shape, n_grid), dtype=torch.float32))
        self.register_buffer("step", torch.as_tensor(step.reshape(*shape, n_grid), dtype=torch.float32))  # table[m + 1] - table[m]

    def _fit_bins(self, pairs):
        n_vox, n_grid = self.n_voxels, self.table.shape[2]
        offset, inv_step, table, _ = _identity_rows(self.n_bins * n_vox, n_grid)
        offset, inv_step = offset.reshape(self.n_bins, n_vox), inv_step.reshape(self.n_bins, n_vox)
        table = table.reshape(self.n_bins, n_vox, n_grid)
        fits = []
        for ref, gen in pairs:
            qg, ng = _column_quantiles(gen, self.n_knots)
            fits.append((self._reference_targets(ref, ng / max(gen.shape[0], 1)), (qg, ng)))
        caps = self._caps(np.stack([np.where(n > 0, q[-1], -np.inf) for (q, n), _ in fits]))
        for b, ((qr, nr), (qg, ng)) in enumerate(fits):
            if caps is not None:  # unmapped voxels: the identity, ending at the cap
                inv_step[b], offset[b], table[b] = _capped_identity(caps[b], n_grid)
            # mapped: enough hits, and hit in at least `min_hit_fraction` of the bin's showers on both sides (the
            # map moves energies given a hit; where the hit probability is off, that would move the mean)
            rows_ref, rows_gen = max(pairs[b][0].shape[0], 1), max(pairs[b][1].shape[0], 1)
            enough = (nr >= self.min_hits) & (ng >= self.min_hits)
            enough &= (nr >= self.min_hit_fraction * rows_ref) & (ng >= self.min_hit_fraction * rows_gen)
            for v in np.flatnonzero(enough):
                # the grid reaches `margin` spans beyond the generated range, continued with slope 1 (a
                # generated value outside the fitted range moves by the end's shift); beyond, it is clamped
                span = max(qg[-1, v] - qg[0, v], 1e-9)
                start = qg[0, v] - self.margin * span
                inv_step[b, v] = (n_grid - 1) / (span * (1 + 2 * self.margin))
                offset[b, v] = -start * inv_step[b, v]
                y = start + np.arange(n_grid) / inv_step[b, v]
                table[b, v] = np.interp(y, qg[:, v], qr[:, v]) + np.minimum(y - qg[0, v], 0) + np.maximum(y - qg[-1, v], 0)
                if caps is not None:
                    table[b, v] = np.minimum(table[b, v], caps[b, v])
        return {"offset": offset, "inv_step": inv_step, "table": table, "step": _steps(table)}

    def _reference_targets(self, ref: torch.Tensor, p_gen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference's values (n_knots, V) the generated knots (evenly spaced ranks among hits) map to, and the
        reference's hit counts; `p_gen` (V,): the generated hit fraction of each column.

        Hits onto hits: the reference's quantiles at the same ranks. With `match_occupancy`, empty rows count as the
        lowest values: the generated knot at rank q among hits has rank u = 1 - p_gen (1 - q) among all rows, and its
        target is the reference's value at that rank: empty (IDENTITY_RANGE's lowest log, scaled to nothing) where u
        falls in the reference's empty share, else the reference's hit quantile at rank 1 - (1 - u) / p_ref (the
        top knot, q = 1, is always the reference's largest value).
        Why: mapping hits onto hits keeps the generated occupancy; a layer hit in 82 % of 1-3 GeV showers where
        Geant4 hits it in 69 % then got the reference's energy given a hit in 82 % of them (+27 % in layer 16).
        """
        if not self.match_occupancy:
            return _column_quantiles(ref, self.n_knots)
        p_ref = (ref > 0).sum(dim=0).double().cpu().numpy() / max(ref.shape[0], 1)
        q = np.linspace(0.0, 1.0, self.n_knots)[:, None]
        rank = 1.0 - p_gen[None, :] * (1.0 - q) / np.maximum(p_ref[None, :], 1e-12)
        values, count = _column_quantiles(ref, self.n_knots, np.clip(rank, 0.0, 1.0))
        return np.where(rank < 0.0, IDENTITY_RANGE[0], values), count

    def voxel_caps(self, e_inc: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Each voxel at most the top of its table (monotone: the largest value the map can give), x E_inc.

        Why: the energy map scales whole (layer, ring) cells after this map; a cell whose sampled energy sat in one
        of its 16 voxels then carried the cell's mapped energy there (0.087 x E_inc at 14 GeV, 3.5x Geant4's
        largest voxel). Bounding again keeps the voxel map's caps the bound of the generated shower.
        """
        return self.table[:, :, -1].index_select(0, self.bins(c)).exp().mul_(e_inc)

    def _caps(self, top: np.ndarray) -> np.ndarray | None:
        """(bins, V) upper bounds of the mapped log fraction from each bin's largest reference log fraction per
        voxel `top` (bins, V; -inf where the voxel had no hit in the bin).

        Why: a voxel's energy distribution is bounded (it cannot hold more than its shower), but the
        decoder's sampled tail is not, and a voxel with too few hits to be mapped kept it: a 2.9 GeV shower
        had a 424 GeV voxel. Cap = the largest reference value of the voxel in the bin + `cap_margin`;
        without a hit in the bin, its largest over all bins; never hit, the bin's smallest cap (the edge of
        the shower). None when `cap_margin` is null (no caps).
        """
        if self.cap_margin is None:
            return None
        any_bin = top.max(axis=0, keepdims=True)
        top = np.where(np.isfinite(top), top, any_bin)
        finite = np.isfinite(top)
        edge = np.where(finite, top, np.inf).min(axis=1, keepdims=True)
        edge = np.where(np.isfinite(edge), edge, IDENTITY_RANGE[1] - self.cap_margin)
        return np.where(finite, top, edge) + self.cap_margin

    def map_log(self, y: torch.Tensor, bins: torch.Tensor, by_bin: bool = False) -> torch.Tensor:
        """The grid coordinate t, its integer part i and weight t - i, then table[b, v, i] + (t - i) * step[b, v, i].

        One gather over all rows (`_map_rows`), or, with by_bin, bin by bin (`_map_bin`): each bin's tables
        (V x grid floats, 188 kB for ds1) then stay in cache for the gathers instead of every row reaching into
        all bins' tables (2.7x faster on one core, docs/vae.md). The same numbers, bit for bit.
        """
        if not by_bin or y.shape[0] < 2 * self.n_bins:
            return self._map_rows(y, bins)
        order = torch.argsort(bins)
        counts = torch.bincount(bins, minlength=self.n_bins).tolist()
        ys = y[order]
        start = 0
        for b, n in enumerate(counts):
            if n:
                self._map_bin(ys[start : start + n], b)
                start += n
        return torch.empty_like(y).index_copy_(0, order, ys)

    def _map_bin(self, y: torch.Tensor, b: int) -> torch.Tensor:
        """`map_log` in place for rows y (n, V) all in bin b."""
        n_vox, n_grid = self.table.shape[1], self.table.shape[2]
        t = self.offset[b].addcmul(y, self.inv_step[b]).clamp_(0.0, n_grid - 1.0 - 1e-3)
        idx = t.to(torch.int64).add_(torch.arange(0, n_vox * n_grid, n_grid, device=y.device))
        return torch.addcmul(self.table[b].reshape(-1).take(idx), self.step[b].reshape(-1).take(idx), t.frac_(), out=y)

    def _map_rows(self, y: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """`map_log` as one gather over all rows (bins (N,) any mix): what every graph computes.

        t >= 0, so floor(t) is its integer part and t - floor(t) its fraction: the numbers of trunc / frac with
        one graph node for both. The lookups are `gather`s along the grid axis of (bins x grid, voxels) tables
        (ONNX GatherElements: 3.7x faster in onnxruntime than Gather on a flat table, whose per-element cost
        made the two lookups 40% of the graph's time; the transposed tables are constants, folded at export).
        """
        n_vox, n_grid = self.table.shape[1], self.table.shape[2]
        t = self.offset.index_select(0, bins).addcmul_(y, self.inv_step.index_select(0, bins))
        t = t.clamp_(0.0, n_grid - 1.0 - 1e-3)
        i = t.floor()
        rows = i.to(torch.int64).add_(bins.reshape(-1, 1) * n_grid)  # row b * grid + i of the (bins x grid, voxels) tables
        at = torch.gather(self.table.transpose(1, 2).reshape(-1, n_vox), 0, rows)
        return torch.addcmul(at, torch.gather(self.step.transpose(1, 2).reshape(-1, n_vox), 0, rows), t.sub_(i))


class VoxelCapMap(QuantileVoxelMap):
    """Each voxel's energy as the decoder sampled it, capped per incident-energy bin at the reference's largest
    value of that voxel + `cap_margin` (log): the bound of `QuantileVoxelMap` without its quantile mapping.

    Why: on dataset 2 the validation split holds ~100 showers per bin, too few for 65 quantiles of each of 6480
    voxels; the noisy per-voxel maps moved E_tot / E_inc by -11 % at 1 GeV and made the energy map's fit
    depend on the seed (docs/studies/2026-12-07-physics-fidelity.md). The cap alone keeps a hot sampled
    voxel from reaching tens of times E_inc.

    `reference`: "validation" (the validation showers, `reference_showers` of them) or "training" (the largest
    value of each voxel over up to `reference_showers` training showers, gathered as they pass: a maximum needs
    no stored showers). Why training: ~100 validation showers per bin miss the rare large hits of outer voxels,
    and caps from them cut the radial profile's outer rings by 22-32 % at 1-10 GeV.
    """

    REFERENCES = ("validation", "training")

    def __init__(self, n_voxels: int, n_bins: int, grid: int, cap_margin: float, samples_per_shower: int,
                 reference_showers: int, reference: str = "validation") -> None:
        super().__init__(n_voxels, n_bins, n_knots=2, grid=grid, margin=0.0, min_hits=2**62,
                         samples_per_shower=samples_per_shower, reference_showers=reference_showers,
                         cap_margin=cap_margin)
        if reference not in self.REFERENCES:
            raise ConfigError(f"model.voxel_map.reference: expected one of {self.REFERENCES}, found {reference!r}")
        self.reference = reference

    @torch.no_grad()
    def fit_maxima(self, top: torch.Tensor) -> None:
        """Fit the caps from the largest reference log fraction per bin and voxel `top` (bins, V; -inf: no hit)."""
        caps = self._caps(top.detach().double().cpu().numpy())
        inv_step, offset, table = (np.stack(parts) for parts in
                                   zip(*(_capped_identity(caps[b], self.table.shape[2]) for b in range(self.n_bins))))
        self._store({"offset": offset, "inv_step": inv_step, "table": table, "step": _steps(table)})
