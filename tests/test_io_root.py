"""ROOT layouts: configs, chunked reads, CaloGAN ntuples, LZ4/dtype on write, layout errors."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from omegaconf import OmegaConf

from detsim.errors import ConfigError, DataFileError
from detsim.io import count_showers, iter_showers, read_showers, write_showers
from detsim.io.root import RootLayout
from detsim.paths import config_dir
from test_io_roundtrip import synthetic_showers


def layout_config(name: str) -> RootLayout:
    return RootLayout.from_config(OmegaConf.to_container(OmegaConf.load(config_dir() / "io" / "root" / f"{name}.yaml")))


def test_every_layout_config_builds() -> None:
    assert [layout_config(n).mode for n in ("fixed", "jagged", "calogan")] == ["fixed", "jagged", "cells"]
    assert RootLayout.from_config(None) == RootLayout()
    with pytest.raises(ConfigError, match="unknown keys"):
        RootLayout.from_config({"trees": "x"})
    with pytest.raises(ConfigError, match="mode"):
        RootLayout.from_config({"mode": "sparse"})


def test_calogan_geant4_ntuple_reads_gev_as_mev_and_skips_overflow(tmp_path: Path) -> None:
    """An ntuple shaped like CaloGAN's: cell_0..cell_506 (504 cells + 3 overflow) and TotalEnergy in GeV."""
    rng = np.random.default_rng(5)
    n = 30
    cells = rng.exponential(20.0, (n, 507))
    total_gev = rng.uniform(1.0, 100.0, n)
    with uproot.recreate(tmp_path / "calogan.root") as out:
        out.mktree("fancy_tree", {**{f"cell_{i}": "f8" for i in range(507)}, "TotalEnergy": "f8"})
        out["fancy_tree"].extend({**{f"cell_{i}": cells[:, i] for i in range(507)}, "TotalEnergy": total_gev})
    layout = layout_config("calogan")
    back = read_showers(tmp_path / "calogan.root", n_voxels=504, chunk_size=12, root=layout)
    np.testing.assert_allclose(back.incident_energy, total_gev * 1000.0, rtol=1e-7)
    np.testing.assert_array_equal(back.showers, cells[:, :504].astype(np.float32))
    every = RootLayout.from_config({**OmegaConf.to_container(OmegaConf.load(config_dir() / "io/root/calogan.yaml")),
                                    "cell_pattern": r"cell_(\d+)"})
    assert read_showers(tmp_path / "calogan.root", root=every).n_voxels == 507  # the regex takes every match
    with pytest.raises(DataFileError, match="504 voxels"):
        read_showers(tmp_path / "calogan.root", n_voxels=504, root=every)


def test_chunks_follow_chunk_size_start_and_stop(tmp_path: Path) -> None:
    data = synthetic_showers(n=100)
    write_showers(tmp_path / "s.root", data)
    chunks = list(iter_showers(tmp_path / "s.root", chunk_size=30, start=5, stop=95))
    assert [len(c) for c in chunks] == [30, 30, 30]
    np.testing.assert_array_equal(chunks[1].showers, data.showers[35:65])
    assert count_showers(tmp_path / "s.root") == 100
    assert list(iter_showers(tmp_path / "s.root", chunk_size=30, start=100)) == []


def test_writer_uses_lz4_and_the_configured_dtype(tmp_path: Path) -> None:
    data = synthetic_showers(n=20)
    write_showers(tmp_path / "s.root", data, root={"dtype": "float32"})
    with uproot.open(tmp_path / "s.root") as handle:
        assert isinstance(handle.file.compression, uproot.LZ4)
        assert handle["showers/showers"].interpretation.from_dtype.base == np.dtype(">f4")
        branch = handle["showers/showers"]
        basket_seek, key_length = int(branch.member("fBasketSeek")[0]), branch.basket(0).member("fKeylen")
    with open(tmp_path / "s.root", "rb") as raw:  # every compressed ROOT block starts with its algorithm's tag
        raw.seek(basket_seek + key_length)
        assert raw.read(2) == b"L4"
    np.testing.assert_array_equal(read_showers(tmp_path / "s.root").showers, data.showers)


def test_jagged_entry_with_wrong_length_names_the_entry(tmp_path: Path) -> None:
    rows = [np.ones(4), np.ones(4), np.ones(3), np.ones(4)]
    with uproot.recreate(tmp_path / "j.root") as out:
        out["showers"] = {"incident_energy": np.full(4, 1000.0), "showers": ak.Array(rows)}
    with pytest.raises(DataFileError, match=r"4 values in every entry.*found 3 in entry 2") as err:
        read_showers(tmp_path / "j.root", n_voxels=4, root={"mode": "jagged"})
    assert err.value.key == "showers/showers"


def test_variable_length_branch_read_as_fixed_is_refused(tmp_path: Path) -> None:
    write_showers(tmp_path / "j.root", synthetic_showers(n=10), root={"mode": "jagged"})
    with pytest.raises(DataFileError, match="mode jagged"):
        read_showers(tmp_path / "j.root", root={"mode": "fixed"})


def test_writing_cells_needs_a_format_pattern(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format string"):
        write_showers(tmp_path / "c.root", synthetic_showers(n=5), root={"mode": "cells", "cell_pattern": r"c(\d+)"})
