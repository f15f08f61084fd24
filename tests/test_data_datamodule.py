"""CaloDataModule and its datasets: seeded disjoint splits, streaming == in-memory rows, workers, Hydra config, a fit."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from detsim.data.datamodule import CaloDataModule
from detsim.data.datasets import range_rows, split_ranges
from detsim.errors import ConfigError
from detsim.io import write_showers
from detsim.paths import config_dir
from test_io_roundtrip import synthetic_showers

N, V = 600, 8
FRACTIONS = {"train": 0.7, "val": 0.2, "test": 0.1}


@pytest.fixture(scope="module")
def shower_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "showers.h5"
    write_showers(path, synthetic_showers(n=N, n_voxels=V, seed=11))  # incident energies are all distinct
    return path


def rows_seen(loader: torch.utils.data.DataLoader) -> np.ndarray:
    """Incident energies of every row the loader yields, in order (they identify rows)."""
    return np.concatenate([batch["incident_energy"].numpy() for batch in loader])


def test_splits_are_seeded_disjoint_and_cover_every_row() -> None:
    ranges = split_ranges(10_000, FRACTIONS, seed=3, block=50)
    rows = {name: range_rows(r) for name, r in ranges.items()}
    assert sum(len(r) for r in rows.values()) == 10_000
    assert len(np.unique(np.concatenate(list(rows.values())))) == 10_000
    for name, fraction in FRACTIONS.items():
        assert abs(len(rows[name]) / 10_000 - fraction) < 0.01
    again = split_ranges(10_000, FRACTIONS, seed=3, block=50)
    assert again == ranges and split_ranges(10_000, FRACTIONS, seed=4, block=50) != ranges
    with pytest.raises(ConfigError):
        split_ranges(100, {"train": 0.9, "val": 0.2}, seed=0)


def _module(path: Path, **kwargs) -> CaloDataModule:
    options = dict(n_voxels=V, batch_size=32, splits=FRACTIONS, seed=5, chunk_size=50, shuffle_buffer=64, split_block=20)
    module = CaloDataModule(path, **{**options, **kwargs})
    module.setup("fit")
    return module


def test_streaming_and_in_memory_paths_serve_the_same_split_rows(shower_file: Path) -> None:
    cached = _module(shower_file)
    streamed = _module(shower_file, cache_max_bytes=0)
    assert cached.in_memory and not streamed.in_memory
    energies = synthetic_showers(n=N, n_voxels=V, seed=11).incident_energy
    for name in ("train", "val", "test"):
        expected = np.sort(energies[cached.split_rows(name)])
        for module in (cached, streamed):
            np.testing.assert_array_equal(np.sort(rows_seen(getattr(module, f"{name}_dataloader")())), expected)
    batch = next(iter(streamed.train_dataloader()))
    assert set(batch) == {"incident_energy", "showers"}
    assert batch["incident_energy"].shape == (32,) and batch["showers"].shape == (32, V)
    assert batch["showers"].dtype == batch["incident_energy"].dtype == torch.float32
    assert len(streamed.train_dataloader()) == sum(1 for _ in streamed.train_dataloader())


def test_streaming_train_order_is_shuffled_seeded_and_changes_per_epoch(shower_file: Path) -> None:
    module = _module(shower_file, cache_max_bytes=0)
    torch.manual_seed(0)
    first, second = rows_seen(module.train_dataloader()), rows_seen(module.train_dataloader())
    torch.manual_seed(0)
    assert np.array_equal(rows_seen(module.train_dataloader()), first)
    assert not np.array_equal(first, second)
    in_file_order = synthetic_showers(n=N, n_voxels=V, seed=11).incident_energy[module.split_rows("train")]
    assert not np.array_equal(first, in_file_order)
    np.testing.assert_array_equal(rows_seen(module.val_dataloader()), rows_seen(module.val_dataloader()))


def test_workers_share_the_rows_without_duplicates(shower_file: Path) -> None:
    module = _module(shower_file, cache_max_bytes=0, num_workers=2)
    seen = rows_seen(module.train_dataloader())
    assert len(seen) == len(module.split_rows("train")) == len(np.unique(seen))


def test_max_showers_and_geometry_checks(shower_file: Path) -> None:
    module = _module(shower_file, max_showers=100)
    assert module.has_test and not CaloDataModule(shower_file, n_voxels=V, splits={"train": 0.9, "val": 0.1}).has_test
    assert module.n_rows == 100 and max(module.split_rows("train").max(), module.split_rows("test").max()) < 100
    with pytest.raises(ConfigError, match="contradicts"):
        CaloDataModule(shower_file, geometry=config_dir() / "geometry" / "calogan.yaml", n_voxels=V)
    with pytest.raises(ConfigError, match="data.path"):
        CaloDataModule(None, n_voxels=V)


def test_data_config_instantiates_with_the_geometry_group(tmp_path: Path) -> None:
    write_showers(tmp_path / "ds1.h5", synthetic_showers(n=120, n_voxels=368, seed=2))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(overrides=["+data=calo", "+geometry=calochallenge_ds1_photons", f"data.path={tmp_path / 'ds1.h5'}",
                                 "data.batch_size=16"])
    module = instantiate(cfg.data)
    assert isinstance(module, CaloDataModule) and module.n_voxels == 368 and module.geometry.name
    assert module.rules.negative_tolerance_mev == cfg.data.validation.negative_tolerance_mev
    module.setup("fit")
    assert next(iter(module.train_dataloader()))["showers"].shape == (16, 368)


class _EnergyRegressor(pl.LightningModule):
    """Predicts log incident energy from log deposited energy: enough to run a real fit on the batches."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.log1p(batch["showers"].sum(dim=1, keepdim=True))
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(1), torch.log(batch["incident_energy"]))

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        self.log("val_loss", self._loss(batch), batch_size=batch["showers"].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.1)


def test_lightning_fits_on_the_streaming_datamodule(shower_file: Path, tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    module = CaloDataModule(shower_file, n_voxels=V, batch_size=64, splits=FRACTIONS, cache_max_bytes=0, chunk_size=100)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(_EnergyRegressor(), datamodule=module)
    assert trainer.global_step == 2 * len(module.train_dataloader())
    assert np.isfinite(trainer.callback_metrics["val_loss"].item())
