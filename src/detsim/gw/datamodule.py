"""LightningDataModule for G2Net-layout data: packs the .npy files into the float32 HDF5 cache once,
splits by seed, fits the Whitener on noise-only *training* samples, and serves whitened tensors.

Batches are dicts {x: (B, 3, n) float32, y: (B,) float32, snr: (B,) float32, index: (B,) int64} so
test-time hooks can bin by injected SNR and match predictions to sample ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detsim.gw.whiten import Whitener
from detsim.gw.io import LABELS_FILE, G2NetArrays, pack_cache, read_cache


class _Split(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, snr: torch.Tensor, index: np.ndarray) -> None:
        self.x, self.y, self.snr, self.index = x, y, snr, torch.as_tensor(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.index[i]
        return {"x": self.x[j], "y": self.y[j], "snr": self.snr[j], "index": j}


class G2NetDataModule(L.LightningDataModule):
    def __init__(
        self,
        path: str,
        preprocessing: Whitener | None = None,
        cache_path: str | None = None,
        side_csv: str | None = "injections.csv",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        whitener_out: str | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(path)  # `data.path`, the key every datamodule takes: here a G2Net folder
        self.whitener = preprocessing or Whitener()
        self.cache_path = Path(cache_path) if cache_path else self.data_dir / "cache.h5"
        self.side_csv = self.data_dir / side_csv if side_csv else None
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.split_seed, self.batch_size, self.num_workers = int(split_seed), int(batch_size), int(num_workers)
        self.whitener_out = whitener_out
        self.arrays: G2NetArrays | None = None
        self.splits: dict[str, np.ndarray] = {}

    @property
    def has_test(self) -> bool:
        return self.test_fraction > 0

    def prepare_data(self) -> None:
        labels = self.data_dir / LABELS_FILE
        stale = not self.cache_path.is_file() or (
            labels.is_file() and labels.stat().st_mtime > self.cache_path.stat().st_mtime)
        if stale:
            pack_cache(self.data_dir, self.cache_path, side_csv=self.side_csv)

    def split_indices(self, n: int) -> dict[str, np.ndarray]:
        """Seeded permutation cut into test | val | train (the same for every model trained on this set)."""
        order = np.random.default_rng(self.split_seed).permutation(n)
        n_test, n_val = int(round(n * self.test_fraction)), int(round(n * self.val_fraction))
        return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test : n_test + n_val]),
                "train": np.sort(order[n_test + n_val :])}

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is not None:
            return
        self.prepare_data()
        arrays = read_cache(self.cache_path)
        self.splits = self.split_indices(len(arrays))
        train = self.splits["train"]
        self.whitener.fit(arrays.strain[train[arrays.target[train] == 0]])
        if self.whitener_out:
            self.whitener.save(self.whitener_out)
        self.x = torch.from_numpy(self.whitener(arrays.strain))
        self.y = torch.from_numpy(arrays.target.astype(np.float32))
        snr = arrays.snr if arrays.snr is not None else np.full(len(arrays), np.nan, dtype=np.float32)
        self.snr = torch.from_numpy(snr.astype(np.float32))
        self.arrays = arrays

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(_Split(self.x, self.y, self.snr, self.splits[split]), batch_size=self.batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def raw(self, split: str) -> dict[str, Any]:
        """Un-whitened strain, labels, SNR and ids of a split, for the matched-filter baseline."""
        idx = self.splits[split]
        assert self.arrays is not None
        return {"strain": self.arrays.strain[idx], "target": self.arrays.target[idx], "ids": self.arrays.ids[idx],
                "snr": self.snr.numpy()[idx], "index": idx}
