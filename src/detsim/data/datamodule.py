"""CaloDataModule: a shower file as seeded train/val/test DataLoaders of raw MeV batches.

A file whose float32 size fits `cache_max_bytes` is read once into memory (fast epochs, map-style
datasets); a bigger one is streamed chunk by chunk with a shuffle buffer. Batches are
`{"incident_energy": (B,), "showers": (B, n_voxels)}` float32 MeV; models do their own preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detsim.data.datasets import (
    EpochLoader,
    InMemoryShowerDataset,
    StreamingShowerDataset,
    pass_batch,
    range_rows,
    split_ranges,
)
from detsim.config import to_plain
from detsim.errors import ConfigError
from detsim.geometry import Geometry, load_geometry
from detsim.io import count_showers, iter_showers, read_showers
from detsim.io.shards import expand_shards, is_single_file
from detsim.io.validation import ValidationRules

SPLITS = ("train", "val", "test")
BYTES_PER_VALUE = 4  # float32 in memory


def resolve_geometry(geometry: Any, n_voxels: int | None) -> tuple[Geometry | None, int | None]:
    """(Geometry or None, n_voxels or None) from a geometry mapping/path/object and/or a voxel count."""
    geometry = to_plain(geometry)
    geo = geometry if isinstance(geometry, Geometry) or geometry is None else load_geometry(geometry)
    if geo is not None and n_voxels is not None and int(n_voxels) != geo.n_voxels:
        raise ConfigError(f"n_voxels={n_voxels} contradicts geometry {geo.name!r} ({geo.n_voxels} voxels)")
    return geo, (geo.n_voxels if geo is not None else (int(n_voxels) if n_voxels is not None else None))


class SplitDataModule(pl.LightningDataModule):
    """A DataModule whose three loaders differ only by split name; subclasses implement `_loader(name)`."""

    def _loader(self, name: str) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class CaloDataModule(SplitDataModule):
    """Train/val/test DataLoaders over one shower file (HDF5 or ROOT).

    path: the shower file; geometry (mapping, path or Geometry) or n_voxels: the expected voxel count
    (checked on every chunk; inferred from the file when neither is given).
    splits: fractions per split, e.g. {train: 0.8, val: 0.1, test: 0.1}; blocks of `split_block` rows
    are assigned by a permutation seeded with `seed`. max_showers: use only the first rows.
    cache_max_bytes: read the file into memory when its float32 size is at most this.
    validation, root_layout: `conf/data/validation` and `conf/io/root` mappings.
    """

    def __init__(
        self,
        path: str | Path | None,
        geometry: Any = None,
        n_voxels: int | None = None,
        batch_size: int = 256,
        splits: Mapping[str, float] | None = None,
        seed: int = 0,
        num_workers: int = 0,
        cache_max_bytes: int = 2 * 1024**3,
        validation: Mapping[str, Any] | None = None,
        root_layout: Mapping[str, Any] | None = None,
        chunk_size: int = 10_000,
        shuffle_buffer: int = 20_000,
        split_block: int = 1000,
        max_showers: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if path is None or str(path) in ("", "None"):
            raise ConfigError("data.path is not set: give the shower file, e.g. data.path=showers.h5")
        self.path = Path(path) if is_single_file(path) else tuple(str(p) for p in expand_shards(path))
        self.geometry, self.n_voxels = resolve_geometry(geometry, n_voxels)
        self.batch_size, self.seed, self.num_workers = int(batch_size), int(seed), int(num_workers)
        self.splits = {k: float(v) for k, v in (to_plain(splits) or {"train": 0.8, "val": 0.1, "test": 0.1}).items()}
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ConfigError(f"data.splits: unknown split names {sorted(unknown)}; use {SPLITS}")
        self.cache_max_bytes = int(cache_max_bytes)
        self.rules = ValidationRules.from_config(to_plain(validation))
        self.root_layout = to_plain(root_layout)
        self.chunk_size, self.shuffle_buffer, self.split_block = int(chunk_size), int(shuffle_buffer), int(split_block)
        self.max_showers = None if max_showers is None else int(max_showers)
        self.pin_memory = bool(pin_memory)
        self.ranges: dict[str, list[tuple[int, int]]] = {}
        self.datasets: dict[str, Dataset] = {}
        self.in_memory = False
        self.n_rows = 0

    # --- set-up ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Count rows, split them, and build the datasets (in memory when they fit); idempotent."""
        if self.datasets:
            return
        n_file = count_showers(self.path, root=self.root_layout)
        self.n_rows = n_file if self.max_showers is None else min(n_file, self.max_showers)
        if self.n_voxels is None:
            first = next(iter_showers(self.path, 1, None, self.rules, root=self.root_layout, stop=1))
            self.n_voxels = first.n_voxels
        self.ranges = split_ranges(self.n_rows, self.splits, self.seed, self.split_block)
        self.in_memory = self.n_rows * (self.n_voxels + 1) * BYTES_PER_VALUE <= self.cache_max_bytes
        if self.in_memory:
            data = read_showers(
                self.path, chunk_size=self.chunk_size, n_voxels=self.n_voxels, rules=self.rules,
                root=self.root_layout, stop=self.n_rows,
            )
            for name, ranges in self.ranges.items():
                rows = range_rows(ranges)
                self.datasets[name] = InMemoryShowerDataset(data.incident_energy[rows], data.showers[rows])
        else:
            for name, ranges in self.ranges.items():
                self.datasets[name] = StreamingShowerDataset(
                    self.path, ranges, self.batch_size, self.n_voxels, self.rules, self.root_layout,
                    self.chunk_size, shuffle=(name == "train"), shuffle_buffer=self.shuffle_buffer,
                    seed=self.seed, num_workers=self.num_workers,
                )

    @property
    def has_test(self) -> bool:
        """Whether a test split with rows exists (the train app skips `trainer.test` otherwise)."""
        if self.ranges:
            return bool(self.ranges.get("test"))
        return self.splits.get("test", 0.0) > 0

    def split_rows(self, name: str) -> np.ndarray:
        """File row indices of a split (after `setup`)."""
        return range_rows(self.ranges[name])

    # --- loaders ---------------------------------------------------------------------------------
    def _loader(self, name: str) -> DataLoader:
        if name not in self.datasets:
            raise ConfigError(f"no {name!r} split: data.splits is {self.splits}")
        dataset = self.datasets[name]
        if self.in_memory:  # batches are one tensor index each; worker processes would only add overhead
            generator = torch.Generator().manual_seed(self.seed)
            return DataLoader(
                dataset, batch_size=self.batch_size, shuffle=(name == "train"), generator=generator,
                collate_fn=pass_batch, pin_memory=self.pin_memory,
            )
        return EpochLoader(
            dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=False,
        )
