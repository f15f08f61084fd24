"""`VoxelMaxima`: running per-bin, per-voxel maxima of the training showers, the reference of the voxel caps
(`VoxelCapMap(reference="training")`)."""

from __future__ import annotations

import math

import torch

from detsim.models.vae.transforms import condition_bin
from detsim.models.vae.voxel_map import log_hits


class VoxelMaxima:
    """The largest log(E_voxel / E_inc) per incident-energy bin and voxel over the showers seen so far.

    Why a running maximum: the caps of `VoxelCapMap(reference="training")` need only this (bins x V numbers),
    so every training shower can count without keeping one of them (6480 voxels a shower on dataset 2).
    """

    def __init__(self, n_bins: int, n_voxels: int, limit: int) -> None:
        self.n_bins, self.limit, self.seen = int(n_bins), int(limit), 0
        self.top = torch.full((self.n_bins, int(n_voxels)), -math.inf, dtype=torch.float64)

    @property
    def full(self) -> bool:
        return self.seen >= self.limit

    @torch.no_grad()
    def update(self, c: torch.Tensor, fractions: torch.Tensor) -> None:
        """Take conditions c (N, 1) and fractions E_voxel / E_inc (N, V) into the maxima (up to `limit` showers)."""
        take = min(self.limit - self.seen, fractions.shape[0])
        if take <= 0:
            return
        logs = log_hits(fractions[:take].cpu(), -math.inf)[0]
        bins = condition_bin(c[:take].detach().cpu(), self.n_bins)
        self.top.scatter_reduce_(0, bins[:, None].expand_as(logs), logs, reduce="amax")
        self.seen += take
