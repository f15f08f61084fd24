"""The energies-only read (`detsim.io.read_incident_energies`): the same energies as a full read, in every file
layout and across shards, without touching a voxel; and every shard opened once by every reader."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import detsim.io.hdf5 as hdf5
import detsim.io.root as root_io
from detsim.errors import DataFileError
from detsim.io import count_showers, iter_showers, read_incident_energies, read_showers, write_showers
from detsim.showers import CaloShowers
from test_io_roundtrip import LAYOUTS, synthetic_showers


def _with_nan_voxels(showers: CaloShowers) -> CaloShowers:
    """Voxels a full read refuses (NaN): an energies-only read that succeeds on them never read them."""
    voxels = showers.showers.copy()
    voxels[:, 0] = np.nan
    return CaloShowers(showers.incident_energy, voxels)


def test_hdf5_energies_equal_the_full_read_and_skip_the_voxels(tmp_path: Path, monkeypatch) -> None:
    data = synthetic_showers(n=130, n_voxels=12)
    write_showers(tmp_path / "s.h5", data)
    np.testing.assert_array_equal(read_incident_energies(tmp_path / "s.h5"), read_showers(tmp_path / "s.h5").incident_energy)
    np.testing.assert_array_equal(read_incident_energies(tmp_path / "s.h5", start=7, stop=90),
                                  data.incident_energy[7:90].astype(np.float32))
    write_showers(tmp_path / "nan.h5", _with_nan_voxels(data))
    with pytest.raises(DataFileError, match="NaN"):
        read_showers(tmp_path / "nan.h5")
    monkeypatch.setattr(hdf5, "_read_block", lambda *args: pytest.fail("a voxel block was read"))
    assert read_incident_energies(tmp_path / "nan.h5").dtype == np.float32


def test_calogan_energies_are_converted_from_gev(tmp_path: Path) -> None:
    n = 20
    with h5py.File(tmp_path / "calogan.h5", "w") as handle:
        for i, shape in enumerate(((3, 96), (12, 12), (12, 6))):
            handle[f"layer_{i}"] = np.ones((n, *shape))
        handle["energy"] = np.linspace(1.0, 100.0, n)[:, None]
    energies = read_incident_energies(tmp_path / "calogan.h5")
    np.testing.assert_array_equal(energies, read_showers(tmp_path / "calogan.h5").incident_energy)
    assert energies[0] == pytest.approx(1000.0) and energies[-1] == pytest.approx(1.0e5)


@pytest.mark.parametrize("mode", sorted(LAYOUTS))
def test_root_energies_read_only_the_energy_branch(tmp_path: Path, mode: str) -> None:
    data = synthetic_showers(n=60, n_voxels=8)
    layout = LAYOUTS[mode]
    write_showers(tmp_path / "s.root", data, root=layout)
    energies = read_incident_energies(tmp_path / "s.root", root=layout)
    np.testing.assert_array_equal(energies, read_showers(tmp_path / "s.root", root=layout).incident_energy)
    np.testing.assert_array_equal(read_incident_energies(tmp_path / "s.root", root=layout, start=5, stop=17), energies[5:17])
    write_showers(tmp_path / "nan.root", _with_nan_voxels(data), root=layout)
    with pytest.raises(DataFileError, match="NaN"):
        read_showers(tmp_path / "nan.root", root=layout)
    np.testing.assert_array_equal(read_incident_energies(tmp_path / "nan.root", root=layout), energies)


def test_energies_in_gev_or_a_missing_branch_are_user_errors(tmp_path: Path) -> None:
    data = synthetic_showers(n=30, n_voxels=4)
    write_showers(tmp_path / "gev.h5", CaloShowers(data.incident_energy / 1000.0, data.showers / 1000.0))
    with pytest.raises(DataFileError, match="looks like GeV"):
        read_incident_energies(tmp_path / "gev.h5")
    write_showers(tmp_path / "s.root", data)
    with pytest.raises(DataFileError, match="showers/E_inc"):
        read_incident_energies(tmp_path / "s.root", root={"energy_branch": "E_inc"})


def test_every_shard_is_opened_once_and_energies_cross_shard_boundaries(tmp_path: Path, monkeypatch) -> None:
    sizes = (3, 5, 2)
    parts = [synthetic_showers(n=n, n_voxels=4, seed=k) for k, n in enumerate(sizes)]
    for k, part in enumerate(parts):
        write_showers(tmp_path / f"shard{k}.h5", part)
    write_showers(tmp_path / "shard0.root", parts[0])
    glob = str(tmp_path / "shard*.h5")
    every = np.concatenate([p.incident_energy for p in parts]).astype(np.float32)
    opened: list[str] = []
    real_open_hdf5, real_open_root = hdf5.open_hdf5, root_io._open_file
    monkeypatch.setattr(hdf5, "open_hdf5", lambda path: opened.append(Path(path).name) or real_open_hdf5(path))
    monkeypatch.setattr(root_io, "_open_file", lambda path: opened.append(Path(path).name) or real_open_root(path))

    assert np.concatenate([c.incident_energy for c in iter_showers(glob, chunk_size=2)]).tolist() == every.tolist()
    assert opened == ["shard0.h5", "shard1.h5", "shard2.h5"]
    opened.clear()
    np.testing.assert_array_equal(read_incident_energies(glob, start=2, stop=9), every[2:9])
    assert opened == ["shard0.h5", "shard1.h5", "shard2.h5"]  # rows 2..8 touch all three, each once
    opened.clear()
    np.testing.assert_array_equal(read_incident_energies(glob, stop=3), every[:3])
    assert opened == ["shard0.h5"]  # the shards after the last wanted row are never opened
    opened.clear()
    mixed = [str(tmp_path / "shard0.root"), str(tmp_path / "shard1.h5")]
    np.testing.assert_array_equal(read_incident_energies(mixed), np.concatenate([every[:3], every[3:8]]))
    assert opened == ["shard0.root", "shard1.h5"] and count_showers(mixed) == 8
