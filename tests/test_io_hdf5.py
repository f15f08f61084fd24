"""HDF5 reader and writer: CaloChallenge layout both ways, CaloGAN layout read with GeV -> MeV."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from detsim.geometry import load_geometry
from detsim.io import count_showers, iter_showers, read_showers, write_showers
from detsim.paths import config_dir
from test_io_roundtrip import synthetic_showers


def test_calochallenge_layout_written_as_float64_gzip_and_read_back(tmp_path: Path) -> None:
    data = synthetic_showers(n=130, n_voxels=12)
    write_showers(tmp_path / "s.h5", data)
    with h5py.File(tmp_path / "s.h5") as handle:
        assert handle["incident_energies"].shape == (130, 1)
        assert handle["showers"].dtype == np.float64
        assert handle["showers"].compression == "gzip"
    chunks = list(iter_showers(tmp_path / "s.h5", chunk_size=50, n_voxels=12, start=10, stop=125))
    assert [len(c) for c in chunks] == [50, 50, 15]
    back = read_showers(tmp_path / "s.h5")
    assert back.showers.dtype == np.float32 and count_showers(tmp_path / "s.h5") == 130
    np.testing.assert_array_equal(back.showers, data.showers)
    np.testing.assert_array_equal(chunks[0].incident_energy, data.incident_energy[10:60])


def test_calogan_layout_is_read_in_mev_with_cells_in_voxel_order(tmp_path: Path) -> None:
    geometry = load_geometry(config_dir() / "geometry" / "calogan.yaml")
    rng = np.random.default_rng(3)
    n = 40
    layers = [rng.exponential(50.0, (n, *layer.shape)) for layer in geometry.layers]
    energy_gev = rng.uniform(1.0, 100.0, (n, 1))
    with h5py.File(tmp_path / "calogan.h5", "w") as handle:  # as CaloGAN's own convert script writes it
        for i, cells in enumerate(layers):
            handle[f"layer_{i}"] = cells
        handle["energy"] = energy_gev
        handle["overflow"] = rng.exponential(1.0, (n, 3))
    back = read_showers(tmp_path / "calogan.h5", n_voxels=geometry.n_voxels, chunk_size=16)
    np.testing.assert_allclose(back.incident_energy, energy_gev[:, 0] * 1000.0, rtol=1e-6)
    expected = np.concatenate([cells.reshape(n, -1) for cells in layers], axis=1).astype(np.float32)
    np.testing.assert_array_equal(back.showers, expected)
    np.testing.assert_allclose(geometry.layer_energies(back.showers)[:, 1], layers[1].sum(axis=(1, 2)), rtol=1e-5)
