"""HDF5 -> ROOT -> HDF5, value by value, for every ROOT layout; and the layout-free in-memory round trips."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from detsim.cli.convert import convert
from detsim.io import read_showers, write_showers
from detsim.io.root import RootLayout
from detsim.showers import CaloShowers

N_SHOWERS, N_VOXELS = 257, 24


def synthetic_showers(n: int = N_SHOWERS, n_voxels: int = N_VOXELS, seed: int = 0) -> CaloShowers:
    """Sparse, positive MeV showers with incident energies 1-100 GeV: small but passes every rule."""
    rng = np.random.default_rng(seed)
    energy = rng.uniform(1e3, 1e5, n)
    showers = rng.exponential(energy[:, None] / (2 * n_voxels), (n, n_voxels)) * (rng.random((n, n_voxels)) < 0.7)
    return CaloShowers(energy, showers)


LAYOUTS = {
    "fixed": {"mode": "fixed"},
    "jagged": {"mode": "jagged", "tree": "events", "voxel_branch": "hits"},
    "cells": {"mode": "cells", "tree": "fancy_tree", "energy_branch": "TotalEnergy", "energy_to_mev": 1000.0},
}


@pytest.mark.parametrize("mode", sorted(LAYOUTS))
def test_hdf5_root_hdf5_is_bit_exact(tmp_path: Path, mode: str) -> None:
    layout = RootLayout.from_config(LAYOUTS[mode])
    first, middle, last = tmp_path / "a.h5", tmp_path / "b.root", tmp_path / "c.h5"
    write_showers(first, synthetic_showers())
    assert convert(first, middle, chunk_size=100, layout=layout, progress=False) == N_SHOWERS
    assert convert(middle, last, chunk_size=64, layout=layout, progress=False) == N_SHOWERS
    with h5py.File(first) as a, h5py.File(last) as c:
        for key in ("incident_energies", "showers"):
            assert a[key].dtype == c[key].dtype == np.float64
            np.testing.assert_array_equal(a[key][()], c[key][()])


@pytest.mark.parametrize("mode", sorted(LAYOUTS))
def test_root_write_read_keeps_every_value(tmp_path: Path, mode: str) -> None:
    layout = RootLayout.from_config(LAYOUTS[mode])
    data = synthetic_showers(seed=1)
    write_showers(tmp_path / "s.root", data, root=layout)
    back = read_showers(tmp_path / "s.root", chunk_size=50, n_voxels=N_VOXELS, root=layout)
    np.testing.assert_array_equal(back.incident_energy, data.incident_energy)
    np.testing.assert_array_equal(back.showers, data.showers)
