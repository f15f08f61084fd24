"""Integrate shower profiles over voxels, so no energy spot is ever sampled one by one.

Depth: the Gamma profile integrated over a slice [lo, hi] is a difference of regularised incomplete
Gamma functions. Radius: F(r; R) = r^2 / (r^2 + R^2) is the closed-form CDF of each radial component,
so a ring gets p [Fc(r1) - Fc(r0)] + (1-p) [Ft(r1) - Ft(r0)], split evenly over its angular bins.
Rectangular cells (CaloGAN): a fixed set of equal-probability radial quantiles x angles per component
is dropped on the grid. Whatever falls beyond the last ring, cell or layer is lost, as in reality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from detsim.geometry import Geometry, GridLayer, RadialLayer


@dataclass
class Component:
    """Visible energy per readout slice (N, S) in MeV, with the radial core/tail radii (mm) and core weight."""

    energy: np.ndarray
    r_core: np.ndarray
    r_tail: np.ndarray
    p_core: np.ndarray


def gamma_fractions(lo: np.ndarray, hi: np.ndarray, start: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Fraction (N, S) of a Gamma(alpha, beta) profile starting at `start` (N,) inside [lo, hi] (S,)."""
    a = alpha[:, None]
    x_lo = np.clip((lo[None, :] - start[:, None]) * beta[:, None], 0.0, None)
    x_hi = np.clip((hi[None, :] - start[:, None]) * beta[:, None], 0.0, None)
    x_lo = np.where(np.isfinite(x_lo), x_lo, 0.0)
    x_hi = np.where(np.isfinite(x_hi), x_hi, 0.0)
    return gammainc(a, x_hi) - gammainc(a, x_lo)


def _ring_fractions(edges: np.ndarray, comp: Component, sel: np.ndarray) -> np.ndarray:
    """Energy (N, n_r) in the rings of one layer from the slices `sel` of a component."""
    r2 = (edges * edges)[None, None, :]
    rc2 = (comp.r_core[:, sel] ** 2)[:, :, None]
    rt2 = (comp.r_tail[:, sel] ** 2)[:, :, None]
    p = comp.p_core[:, sel][:, :, None]
    cdf = p * (r2 / (r2 + rc2)) + (1.0 - p) * (r2 / (r2 + rt2))
    rings = np.diff(cdf, axis=2)
    return np.einsum("nsr,ns->nr", rings, comp.energy[:, sel])


class QuadratureGrid:
    """Equal-probability radial quantiles (in units of R) x equally spaced angles for one component."""

    def __init__(self, n_r: int, n_phi: int):
        u = (np.arange(n_r) + 0.5) / n_r
        rho = np.sqrt(u / (1.0 - u))
        phi = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
        self.rho = np.repeat(rho, n_phi)
        self.phi = np.tile(phi, n_r)
        self.weight = 1.0 / (n_r * n_phi)


def _grid_cells(layer: GridLayer, comp: Component, sel: np.ndarray, quad: QuadratureGrid, phi0: np.ndarray) -> np.ndarray:
    """Energy (N, n_cells) of one grid layer from the slices `sel`, by dropping quadrature points on it."""
    n = comp.energy.shape[0]
    n_cells = layer.n_voxels
    out = np.zeros(n * n_cells)
    angle = quad.phi[None, :] + phi0[:, None]  # (N, Q): a per-shower rotation hides the fixed pattern
    cos_a, sin_a = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    row_base = (np.arange(n) * n_cells)[:, None, None]
    for radius, weight in ((comp.r_core[:, sel], comp.p_core[:, sel]), (comp.r_tail[:, sel], 1.0 - comp.p_core[:, sel])):
        rr = radius[:, :, None] * quad.rho[None, None, :]
        ix = np.floor(rr * cos_a / layer.cell_x + layer.n_x / 2.0).astype(np.int64)
        iy = np.floor(rr * sin_a / layer.cell_y + layer.n_y / 2.0).astype(np.int64)
        ok = (ix >= 0) & (ix < layer.n_x) & (iy >= 0) & (iy < layer.n_y)
        e = np.broadcast_to((comp.energy[:, sel] * weight * quad.weight)[:, :, None], ok.shape)
        flat = np.broadcast_to(row_base, ok.shape) + iy * layer.n_x + ix
        out += np.bincount(flat[ok], weights=e[ok], minlength=n * n_cells)
    return out.reshape(n, n_cells)


def deposit(
    geometry: Geometry,
    slice_layer: np.ndarray,
    components: list[Component],
    quad: QuadratureGrid,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean visible energy per voxel (N, n_voxels) of the given components."""
    n = components[0].energy.shape[0]
    out = np.zeros((n, geometry.n_voxels))
    phi0 = None
    for position, layer in enumerate(geometry.layers):
        sel = np.flatnonzero(slice_layer == position)
        cells = geometry.layer_slice(position)
        if isinstance(layer, RadialLayer):
            edges = np.asarray(layer.r_edges)
            rings = sum(_ring_fractions(edges, comp, sel) for comp in components)
            out[:, cells] = np.repeat(rings[:, None, :] / layer.n_alpha, layer.n_alpha, axis=1).reshape(n, -1)
        else:
            if phi0 is None:
                phi0 = rng.uniform(0.0, 2.0 * np.pi, n)
            out[:, cells] = sum(_grid_cells(layer, comp, sel, quad, phi0) for comp in components)
    return out
