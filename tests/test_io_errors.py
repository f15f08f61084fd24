"""Bad input gets one clear DataFileError (file, key, expected, found) and, via detsim-convert, one line + exit 2.

Every case is built as a real file in a temporary folder, for HDF5 and for ROOT where it applies. The
CLI runs of all cases start together (they are independent processes), which keeps the suite fast.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from detsim.errors import DataFileError
from detsim.io import read_showers, write_showers
from detsim.showers import CaloShowers
from test_io_roundtrip import synthetic_showers

N_VOXELS = 10
DS1_PHOTON_VOXELS = 368  # conf/geometry/calochallenge_ds1_photons


@dataclass
class Case:
    path: Path
    key: str | None  # a substring of the key the error must name; None for file-level errors
    n_voxels: int | None = None
    cli: list[str] = field(default_factory=list)


def _good(n: int = 20, n_voxels: int = N_VOXELS) -> CaloShowers:
    return synthetic_showers(n=n, n_voxels=n_voxels, seed=7)


def _write(path: Path, data: CaloShowers) -> Path:
    write_showers(path, data)
    return path


def _voxel_key(fmt: str) -> str:
    return "showers" if fmt == "h5" else "showers/showers"


def _energy_key(fmt: str) -> str:
    return "incident_energies" if fmt == "h5" else "showers/incident_energy"


def missing_file(d: Path, fmt: str) -> Case:
    return Case(d / f"absent.{fmt}", None)


def not_the_format(d: Path, fmt: str) -> Case:
    path = d / f"notes.{fmt}"
    path.write_text("incident_energy,showers\n1000,0.5\n" * 50)
    return Case(path, None)


def truncated(d: Path, fmt: str) -> Case:
    path = _write(d / f"cut.{fmt}", _good(n=400, n_voxels=64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Case(path, None)


def empty_bytes(d: Path, fmt: str) -> Case:
    path = d / f"zero.{fmt}"
    path.touch()
    return Case(path, None)


def empty_entries(d: Path, fmt: str) -> Case:
    path = _write(d / f"none.{fmt}", _good(n=0))
    return Case(path, "showers")


def missing_dataset(d: Path, fmt: str) -> Case:
    path = d / f"partial.{fmt}"
    if fmt == "h5":
        with h5py.File(path, "w") as handle:
            handle["incident_energies"] = np.full((5, 1), 1000.0)
        return Case(path, "showers")
    with uproot.recreate(path) as out:  # a tree named otherwise
        out["events"] = {"incident_energy": np.full(5, 1000.0)}
    return Case(path, "showers")


def missing_branch(d: Path, fmt: str) -> Case:
    path = d / "branchless.root"
    with uproot.recreate(path) as out:
        out["showers"] = {"incident_energy": np.full(5, 1000.0), "voxels": np.ones((5, N_VOXELS))}
    return Case(path, "showers/showers")


def geometry_mismatch(d: Path, fmt: str) -> Case:
    path = _write(d / f"small.{fmt}", _good())
    return Case(path, _voxel_key(fmt), DS1_PHOTON_VOXELS, ["geometry=calochallenge_ds1_photons"])


def length_mismatch(d: Path, fmt: str) -> Case:
    path = d / "lengths.h5"
    good = _good()
    with h5py.File(path, "w") as handle:
        handle["incident_energies"] = good.incident_energy[:-1, None].astype(np.float64)
        handle["showers"] = good.showers.astype(np.float64)
    return Case(path, "incident_energies")


def nan_voxel(d: Path, fmt: str) -> Case:
    good = _good()
    good.showers[3, 4] = np.nan
    return Case(_write(d / f"nan.{fmt}", good), _voxel_key(fmt))


def inf_energy(d: Path, fmt: str) -> Case:
    good = _good()
    good.incident_energy[6] = np.inf
    return Case(_write(d / f"inf.{fmt}", good), _energy_key(fmt))


def negative_voxel(d: Path, fmt: str) -> Case:
    good = _good()
    good.showers[2, 1] = -1.0
    return Case(_write(d / f"negative.{fmt}", good), _voxel_key(fmt))


def gev_energies(d: Path, fmt: str) -> Case:
    good = _good()
    return Case(_write(d / f"gev.{fmt}", CaloShowers(good.incident_energy / 1000.0, good.showers)), _energy_key(fmt))


def jagged_length(d: Path, fmt: str) -> Case:
    path = d / "ragged.root"
    with uproot.recreate(path) as out:
        rows = ak.Array([np.ones(N_VOXELS), np.ones(N_VOXELS - 1), np.ones(N_VOXELS)])
        out["showers"] = {"incident_energy": np.full(3, 1000.0), "showers": rows}
    return Case(path, "showers/showers", N_VOXELS)


BOTH, ROOT_ONLY, HDF5_ONLY = ("h5", "root"), ("root",), ("h5",)
BUILDERS: dict[str, tuple[Callable[[Path, str], Case], tuple[str, ...]]] = {
    "missing_file": (missing_file, BOTH),
    "not_the_format": (not_the_format, BOTH),
    "truncated": (truncated, BOTH),
    "empty_bytes": (empty_bytes, BOTH),
    "empty_entries": (empty_entries, BOTH),
    "missing_dataset_or_tree": (missing_dataset, BOTH),
    "missing_branch": (missing_branch, ROOT_ONLY),
    "geometry_mismatch": (geometry_mismatch, BOTH),
    "length_mismatch": (length_mismatch, HDF5_ONLY),  # a TTree's branches share one entry count
    "nan_voxel": (nan_voxel, BOTH),
    "inf_energy": (inf_energy, BOTH),
    "negative_voxel": (negative_voxel, BOTH),
    "gev_energies": (gev_energies, BOTH),
}
PARAMS = [pytest.param(name, fmt, id=f"{name}-{fmt}") for name, (_, fmts) in BUILDERS.items() for fmt in fmts]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Case]:
    root = tmp_path_factory.mktemp("bad_input")
    built = {}
    for name, (builder, fmts) in BUILDERS.items():
        for fmt in fmts:
            folder = root / f"{name}-{fmt}"
            folder.mkdir()
            built[(name, fmt)] = builder(folder, fmt)
    return built


@pytest.mark.parametrize(("name", "fmt"), PARAMS)
def test_reader_raises_data_file_error(cases: dict[tuple[str, str], Case], name: str, fmt: str) -> None:
    case = cases[(name, fmt)]
    with pytest.raises(DataFileError) as err:
        read_showers(case.path, chunk_size=7, n_voxels=case.n_voxels)
    assert err.value.path == str(case.path) and str(case.path) in str(err.value)
    assert err.value.expected and err.value.found
    if case.key is not None:
        assert err.value.key is not None and case.key in err.value.key, err.value


def test_jagged_length_raises_data_file_error(tmp_path: Path) -> None:
    case = jagged_length(tmp_path, "root")
    with pytest.raises(DataFileError, match="entry 1") as err:
        read_showers(case.path, n_voxels=N_VOXELS, root={"mode": "jagged"})
    assert err.value.key == case.key


@pytest.mark.parametrize("fmt", ["h5", "root"])
def test_small_negative_noise_is_accepted(tmp_path: Path, fmt: str) -> None:
    good = _good()
    good.showers[1, 1] = -5e-4  # below zero, within the 1e-3 MeV tolerance of conf/data/validation/default.yaml
    assert read_showers(_write(tmp_path / f"noise.{fmt}", good)).showers.min() == np.float32(-5e-4)


def _convert_command() -> list[str]:
    script = Path(sys.executable).with_name("detsim-convert")
    return [str(script)] if script.exists() else [sys.executable, "-m", "detsim.cli.convert"]


@pytest.fixture(scope="module")
def cli_runs(cases: dict[tuple[str, str], Case]) -> dict[tuple[str, str], tuple[int, str, str, Path]]:
    """Run detsim-convert on every case at once; (exit status, stdout, stderr, output path) per case."""
    running = {}
    for (name, fmt), case in cases.items():
        folder = case.path.parent
        output = folder / ("out.root" if fmt == "h5" else "out.h5")
        argv = [*_convert_command(), f"input={case.path}", f"output={output}", f"hydra.run.dir={folder / 'hydra'}"]
        argv += [a for a in case.cli if a.startswith("geometry=")]
        proc = subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running[(name, fmt)] = (proc, output)
    results = {}
    for key, (proc, output) in running.items():
        out, err = proc.communicate(timeout=120)
        results[key] = (proc.returncode, out, err, output)
    return results


@pytest.mark.parametrize(("name", "fmt"), PARAMS)
def test_cli_prints_one_line_and_exits_2(cli_runs: dict, cases: dict, name: str, fmt: str) -> None:
    status, out, err, output = cli_runs[(name, fmt)]
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("detsim error: "), err
    assert str(cases[(name, fmt)].path) in lines[0]
    assert "Traceback" not in out + err
    assert not output.exists() and not list(output.parent.glob(".*partial*"))
