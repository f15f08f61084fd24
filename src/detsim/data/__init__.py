"""Shower data for training: seeded splits, streaming and in-memory datasets, the Lightning DataModule.

`CaloDataModule` is imported lazily so that using the datasets does not import Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CaloDataModule", "InMemoryShowerDataset", "StreamingShowerDataset", "split_ranges"]


def __getattr__(name: str) -> Any:
    if name == "CaloDataModule":
        from detsim.data.datamodule import CaloDataModule

        return CaloDataModule
    if name in ("InMemoryShowerDataset", "StreamingShowerDataset", "split_ranges"):
        from detsim.data import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'detsim.data' has no attribute {name!r}")
