"""Shards read as one set (globs, lists; readers, datamodule, convert); partial files are skipped by globs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from detsim.errors import DataFileError
from detsim.io import count_showers, iter_showers, read_showers
from detsim.io.hdf5 import HDF5ShowerWriter
from detsim.showers import CaloShowers


def _showers(n: int, offset: int) -> CaloShowers:
    e = np.arange(offset, offset + n, dtype=np.float32) + 1000.0
    return CaloShowers(e, np.outer(e, np.ones(6, dtype=np.float32)) * 0.01)


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    for k, n in enumerate((3, 5, 2)):
        with HDF5ShowerWriter(tmp_path / f"g4_shard{k * 5}.h5", 6) as w:  # 0, 5, 10: natural order
            w.append(_showers(n, 100 * k))
    (tmp_path / "g4_shard99.partial.h5").write_bytes(b"not finished")
    return tmp_path


def test_glob_and_list_read_as_one_set(shards: Path) -> None:
    glob = str(shards / "g4_shard*.h5")
    assert count_showers(glob) == 10
    e = read_showers(glob).incident_energy
    assert np.array_equal(e, np.concatenate([np.arange(3), 100 + np.arange(5), 200 + np.arange(2)]) + 1000.0)
    listed = [str(shards / "g4_shard10.h5"), str(shards / "g4_shard0.h5")]
    assert np.array_equal(read_showers(listed).incident_energy[:2], [1200.0, 1201.0])
    part = np.concatenate([c.incident_energy for c in iter_showers(glob, chunk_size=2, start=2, stop=9)])
    assert np.array_equal(part, e[2:9])  # rows across shard boundaries
    with pytest.raises(DataFileError, match="no match"):
        count_showers(str(shards / "none_*.h5"))


def test_datamodule_and_convert_take_shards(shards: Path, tmp_path: Path) -> None:
    from detsim.cli.convert import convert
    from detsim.data.datamodule import CaloDataModule

    merged = tmp_path / "merged.h5"
    assert convert(str(shards / "g4_shard*.h5"), merged, progress=False) == 10
    assert np.array_equal(read_showers(merged).incident_energy, read_showers(str(shards / "g4_*.h5")).incident_energy)
    dm = CaloDataModule(path=[str(shards / "g4_shard0.h5"), str(shards / "g4_shard5.h5")], n_voxels=6, batch_size=2)
    dm.setup()
    assert dm.n_rows == 8
