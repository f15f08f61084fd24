"""detsim-convert: the Hydra app end to end, layouts chosen from the config group, no half-written outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from detsim.cli.convert import convert
from detsim.errors import DataFileError
from detsim.io import read_showers, write_showers
from test_io_errors import _convert_command
from test_io_roundtrip import synthetic_showers

CALOGAN_VOXELS = 504


def test_cli_converts_hdf5_to_a_calogan_ntuple_losslessly(tmp_path: Path) -> None:
    data = synthetic_showers(n=60, n_voxels=CALOGAN_VOXELS)
    write_showers(tmp_path / "in.h5", data)
    done = subprocess.run(
        [*_convert_command(), f"input={tmp_path / 'in.h5'}", f"output={tmp_path / 'out.root'}", "io/root=calogan",
         "geometry=calogan", "chunk_size=25", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 60 showers" in done.stdout
    layout = {"mode": "cells", "tree": "fancy_tree", "energy_branch": "TotalEnergy", "energy_to_mev": 1000.0}
    back = read_showers(tmp_path / "out.root", root=layout)
    np.testing.assert_array_equal(back.showers, data.showers)
    np.testing.assert_array_equal(back.incident_energy, data.incident_energy)


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    write_showers(tmp_path / "in.h5", synthetic_showers(n=10))
    (tmp_path / "out.root").write_text("precious")
    with pytest.raises(DataFileError, match="overwrite"):
        convert(tmp_path / "in.h5", tmp_path / "out.root", progress=False)
    assert (tmp_path / "out.root").read_text() == "precious"
    assert convert(tmp_path / "in.h5", tmp_path / "out.root", overwrite=True, progress=False) == 10


def test_failure_midway_leaves_no_output(tmp_path: Path) -> None:
    data = synthetic_showers(n=50)
    data.showers[40, 0] = np.nan  # in the second chunk: the first one was already written
    write_showers(tmp_path / "in.h5", data)
    with pytest.raises(DataFileError, match="entry 40"):
        convert(tmp_path / "in.h5", tmp_path / "out.root", chunk_size=20, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5"]


def test_unknown_output_suffix_and_same_path_are_refused(tmp_path: Path) -> None:
    write_showers(tmp_path / "in.h5", synthetic_showers(n=5))
    with pytest.raises(DataFileError, match="suffix"):
        convert(tmp_path / "in.h5", tmp_path / "out.csv", progress=False)
    with pytest.raises(DataFileError, match="different from the input"):
        convert(tmp_path / "in.h5", tmp_path / "in.h5", overwrite=True, progress=False)
