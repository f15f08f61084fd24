"""`FittedMap`: the on/off switch shared by the post-hoc maps (voxel map, energy map).

A map is fitted after each validation epoch and stored in the checkpoint (`fitted`); generation applies it only
when fitted and enabled, and a fit switches maps off while it draws the showers it is fitted to (`disabled`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class FittedMap(nn.Module):
    """`fitted` (a buffer: the checkpoint knows) and `enabled` (a run setting); `active` when both."""

    def __init__(self, persistent: bool = True) -> None:
        super().__init__()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool), persistent=persistent)
        self.enabled = True

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.fitted)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Generation without the map inside the block (the draws a fit needs; what the map costs)."""
        before, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = before
