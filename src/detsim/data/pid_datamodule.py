"""ParticleIdDataModule: labelled shower files (one per particle) as balanced, seeded train/val/test loaders.

Particle-ID samples are small next to generative-training ones (a CaloGAN file per particle is typical),
so every file is read into memory once. Each class (signal or background) is cut to the same number of
showers, spread evenly over its files: a classifier trained on unbalanced classes learns the prior, and
background rejection at fixed signal efficiency is quoted for balanced test sets. Batches are
`{"incident_energy": (B,), "showers": (B, n_voxels), "label": (B,)}` float32 (MeV; label 1 = signal);
the model does its own preprocessing, as with `CaloDataModule`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from detsim.config import to_plain
from detsim.data.datamodule import SPLITS, SplitDataModule, resolve_geometry
from detsim.data.datasets import Batch, InMemoryShowerDataset, pass_batch
from detsim.errors import ConfigError
from detsim.data.splits import stratified_split
from detsim.io import read_showers
from detsim.io.validation import ValidationRules
from detsim.showers import CaloShowers


class LabelledShowerDataset(InMemoryShowerDataset):
    """An in-memory split whose batches also carry the class label (1 = signal)."""

    def __init__(self, incident_energy: np.ndarray, showers: np.ndarray, label: np.ndarray) -> None:
        super().__init__(incident_energy, showers)
        self.label = torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))

    def __getitem__(self, index: int) -> Batch:
        return {**super().__getitem__(index), "label": self.label[index]}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        return {**super().__getitems__(indices), "label": self.label[torch.as_tensor(indices, dtype=torch.long)]}


def class_quotas(counts: Mapping[str, int], signal: Sequence[str]) -> dict[str, int]:
    """Showers to keep per file so that signal and background hold equally many, split evenly over their files."""
    classes = {True: [n for n in counts if n in signal], False: [n for n in counts if n not in signal]}
    per_class = min(len(names) * min(counts[n] for n in names) for names in classes.values())
    return {name: per_class // len(names) for names in classes.values() for name in names}


class ParticleIdDataModule(SplitDataModule):
    """Balanced signal-vs-background loaders over two or more labelled shower files.

    files: {particle name: path} (CaloChallenge or CaloGAN HDF5, or ROOT); signal: the name(s) labelled 1,
    every other file is background. geometry (mapping, path or Geometry) or n_voxels: the voxel count every
    file must have. splits: {train, val, test} fractions, applied per class (each split stays balanced)
    after a seeded shuffle, so the parts are disjoint and the same seed gives the same rows.
    max_showers: read at most this many rows per file. balance: cut classes to equal size (see module doc).
    """

    def __init__(
        self,
        files: Mapping[str, str | Path],
        signal: str | Sequence[str],
        geometry: Any = None,
        n_voxels: int | None = None,
        batch_size: int = 256,
        splits: Mapping[str, float] | None = None,
        seed: int = 0,
        max_showers: int | None = None,
        balance: bool = True,
        validation: Mapping[str, Any] | None = None,
        root_layout: Mapping[str, Any] | None = None,
        chunk_size: int = 10_000,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.files = {str(k): Path(str(v)) for k, v in (to_plain(files) or {}).items()}
        signal = to_plain(signal)
        self.signal = [str(signal)] if isinstance(signal, str) else [str(s) for s in signal or []]
        unknown = [s for s in self.signal if s not in self.files]
        if len(self.files) < 2 or not self.signal or unknown or len(self.signal) == len(self.files):
            raise ConfigError(
                f"data.files / data.signal: need >= 2 files with signal naming some but not all of them;"
                f" files {sorted(self.files)}, signal {self.signal}"
            )
        self.geometry, self.n_voxels = resolve_geometry(geometry, n_voxels)
        self.batch_size, self.seed = int(batch_size), int(seed)
        fractions = {k: float(v) for k, v in (to_plain(splits) or {"train": 0.6, "val": 0.2, "test": 0.2}).items()}
        if set(fractions) != set(SPLITS):
            raise ConfigError(f"data.splits must give {SPLITS}, got {sorted(fractions)}")
        self.fractions = tuple(fractions[k] for k in SPLITS)
        self.max_showers = None if max_showers is None else int(max_showers)
        self.balance = bool(balance)
        self.rules = ValidationRules.from_config(to_plain(validation))
        self.root_layout = to_plain(root_layout)
        self.chunk_size, self.pin_memory = int(chunk_size), bool(pin_memory)
        self.datasets: dict[str, LabelledShowerDataset] = {}
        self.counts: dict[str, int] = {}  # showers used per file

    @property
    def background(self) -> list[str]:
        return [name for name in self.files if name not in self.signal]

    @property
    def labels(self) -> tuple[str, str]:
        """(signal, background) names for plots, e.g. ("photon", "pion")."""
        return "+".join(self.signal), "+".join(self.background)

    @property
    def has_test(self) -> bool:
        return self.fractions[2] > 0

    def _read(self, name: str) -> CaloShowers:
        return read_showers(
            self.files[name], chunk_size=self.chunk_size, n_voxels=self.n_voxels, rules=self.rules,
            root=self.root_layout, stop=self.max_showers,
        )

    def setup(self, stage: str | None = None) -> None:
        """Read every file, balance the classes, split per class; idempotent."""
        if self.datasets:
            return
        samples = {name: self._read(name) for name in self.files}
        voxels = {name: s.n_voxels for name, s in samples.items()}
        if len(set(voxels.values())) > 1:
            raise ConfigError(f"data.files hold showers of different voxel counts {voxels}: simulate all on one geometry")
        rng = np.random.default_rng(self.seed)
        quota = class_quotas({n: len(s) for n, s in samples.items()}, self.signal) if self.balance else None
        parts, labels = [], []
        for name, showers in samples.items():
            keep = np.sort(rng.permutation(len(showers))[: quota[name]]) if quota else np.arange(len(showers))
            parts.append(showers[keep])
            labels.append(np.full(len(keep), float(name in self.signal), dtype=np.float32))
            self.counts[name] = len(keep)
        data, label = CaloShowers.concatenate(parts), np.concatenate(labels)
        split = stratified_split(label, self.fractions, rng)
        for name, rows in zip(SPLITS, (split.train, split.val, split.test)):
            self.datasets[name] = LabelledShowerDataset(data.incident_energy[rows], data.showers[rows], label[rows])

    def _loader(self, name: str) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.datasets[name], batch_size=self.batch_size, shuffle=(name == "train"), generator=generator,
            collate_fn=pass_batch, pin_memory=self.pin_memory,
        )
