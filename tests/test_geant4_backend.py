"""The Geant4 backend on the stand-in data: scoring, physics of the showers, seeding, CLI output files.

Few, low-energy electron showers in the dataset-2 Si-W calorimeter keep each test to seconds.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from detsim.sim.calo.config import compose_simulate_config

pytestmark = pytest.mark.skipif(importlib.util.find_spec("geant4_pybind") is None, reason="pip install 'detsim[geant4]'")
ROOT = Path(__file__).resolve().parents[1]
N_VOX = 45 * 16 * 9


def _cfg(g4_data: Path, *overrides: str):
    return compose_simulate_config(
        ["simulator=geant4", "geometry=calochallenge_ds2", "particle=electron", f"geant4.data_dir={g4_data}", *overrides]
    )


def _raw(g4_data: Path, energies: list[float], seed: int = 1, n_workers: int = 1, block_size: int = 0, stepping: bool = False):
    from detsim.sim.geant4.runner import simulate_raw

    bs = block_size or len(energies)
    return simulate_raw(_cfg(g4_data, f"simulator.block_size={bs}"), len(energies), seed, np.array(energies), n_workers, stepping)


def test_cpp_scorer_equals_python_stepping_exactly(g4_data: Path) -> None:
    setup, results = _raw(g4_data, [300.0, 300.0, 1000.0], stepping=True)
    (r,) = results
    assert r.cells.sum() > 0
    assert np.array_equal(r.stepping_cells, r.cells)  # same steps, same order: bit-identical sums
    # replica copy numbers map to the detsim cells: energy whose step midpoint lies in another cell ~ 0
    assert r.misplaced_MeV < 1e-6 * r.cells.sum()


@pytest.fixture(scope="module")
def ladder(g4_data: Path):
    """20 electrons at each of 1, 4 and 16 GeV, digitised as the CLI stores them."""
    from detsim.sim.geant4.runner import digitise

    energies = np.repeat([1000.0, 4000.0, 16000.0], 20)
    setup, results = _raw(g4_data, list(energies), seed=7, block_size=20)
    cells = np.concatenate([r.cells for r in results])
    raw_active = np.concatenate([r.cells.sum(1) + r.annulus for r in results])
    absorber = np.concatenate([r.absorber for r in results])
    showers = digitise(cells, setup.calo, setup.calo.sampling_fraction)
    return energies, showers, raw_active, absorber


def test_energy_is_conserved_after_the_sampling_fraction(ladder) -> None:
    energies, showers, active, absorber = ladder
    # nothing escapes a 38 X0 calorimeter at these energies but the unread annulus and backscatter
    assert np.all((active + absorber) / energies > 0.95)
    response = showers.sum(1) / energies
    for e in (4000.0, 16000.0):
        assert response[energies == e].mean() == pytest.approx(0.99, abs=0.03)
    assert response[energies == 1000.0].mean() == pytest.approx(0.98, abs=0.06)


def test_resolution_scales_as_one_over_sqrt_e(ladder) -> None:
    energies, showers, _, _ = ladder
    response = showers.sum(1) / energies
    rel = np.array([response[energies == e].std() / response[energies == e].mean() for e in (1000.0, 16000.0)])
    stochastic = rel * np.sqrt([1.0, 16.0])  # a = sigma/E * sqrt(E / GeV)
    assert 0.08 < stochastic[0] < 0.25 and 0.08 < stochastic[1] < 0.25
    assert 2.0 < rel[0] / rel[1] < 7.0  # sqrt(16) = 4 expected


def test_shower_maximum_grows_with_ln_e(ladder) -> None:
    energies, showers, _, _ = ladder
    layers = showers.reshape(len(showers), 45, -1).sum(2)
    depth = np.array([(layers[energies == e] * np.arange(45)).sum() / layers[energies == e].sum() for e in (1000.0, 4000.0, 16000.0)])
    slope = np.polyfit(np.log([1.0, 4.0, 16.0]), depth, 1)[0]  # layers per unit ln E; 1 X0 = 1.24 layers here
    assert np.all(np.diff(depth) > 0) and 0.8 < slope < 1.8


def test_workers_and_seeds(g4_data: Path) -> None:
    energies = [400.0, 400.0, 800.0, 800.0]
    _, one = _raw(g4_data, energies, seed=3, n_workers=1, block_size=2)
    _, two = _raw(g4_data, energies, seed=3, n_workers=2, block_size=2)
    a, b = (np.concatenate([r.cells for r in rs]) for rs in (one, two))
    assert a.sum() > 0 and np.array_equal(a, b)  # 2 workers give the showers of 1; same seed, same showers
    _, other = _raw(g4_data, energies[:2], seed=4, n_workers=1, block_size=2)
    assert not np.array_equal(other[0].cells, one[0].cells)


def test_cli_writes_an_atomic_file_with_provenance(g4_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "prod" / "g4_{shard}.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "detsim.cli.simulate", "simulator=geant4", "geometry=calochallenge_ds2", "particle=electron",
         "n=4", "seed=5", "n_workers=2", "shard=1", "simulator.block_size=2", "spectrum=uniform_1_100gev",
         "spectrum.min_MeV=300", "spectrum.max_MeV=600", f"geant4.data_dir={g4_data}", f"out='{out}'",
         f"hydra.run.dir={tmp_path / 'h'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "prod" / "g4_0001.h5"
    assert sorted(p.name for p in target.parent.iterdir()) == ["g4_0001.h5"]  # no partial file left
    with h5py.File(target) as f:
        showers, e = f["showers"][:], f["incident_energies"][:, 0]
        attrs = dict(f.attrs)
    assert showers.shape == (4, N_VOX) and np.all((e >= 300) & (e <= 600))
    assert attrs["geant4_data"] == "stand-in" and "11.4" in attrs["geant4_version"].replace("-", ".").replace("11.04", "11.4")
    assert attrs["physics_list"] == "G4EmStandardPhysics_option1" and attrs["shard"] == 1 and attrs["seed"] == 5
    assert attrs["sampling_fraction"] == pytest.approx(0.0229) and attrs["threshold_keV"] == pytest.approx(15.15)
    kept = showers[showers > 0] * attrs["sampling_fraction"]
    assert kept.min() >= 15.15e-3 * (1 - 1e-6)  # the per-voxel threshold on the Si deposit


def test_a_killed_geant4_job_resumes_to_the_same_file(g4_data: Path, tmp_path: Path, capsys) -> None:
    """Blocks are files in out.partial/; a rerun continues after the last one and equals the uninterrupted run."""
    from conftest import partial_output_kept
    from detsim.io import read_showers
    from detsim.sim.geant4.runner import run

    cfg = _cfg(g4_data, "n=4", "seed=6", "simulator.block_size=2", "spectrum=uniform_1_100gev", "spectrum.min_MeV=300",
               "spectrum.max_MeV=600", "progress=false", f"out={tmp_path / 'g4.h5'}")
    with partial_output_kept():
        out = run(cfg)
    whole = read_showers(out)
    out.unlink()
    (tmp_path / "g4.partial" / "block_000001.h5").unlink()  # killed during the second block
    run(cfg)
    assert "2 showers already written" in capsys.readouterr().err and not (tmp_path / "g4.partial").exists()
    again = read_showers(out)
    assert whole.showers.sum() > 0 and np.array_equal(whole.showers, again.showers)
    assert np.array_equal(whole.incident_energy, again.incident_energy)
    with h5py.File(out) as f:
        assert "11" in str(f.attrs["geant4_version"])  # learnt by the first run, kept for the merge


def test_calibrate_writes_the_sampling_fraction(g4_data: Path, tmp_path: Path) -> None:
    from detsim.sim.geant4.runner import run

    target = tmp_path / "det.yaml"
    target.write_text((ROOT / "conf" / "detector" / "si_w_par04.yaml").read_text())
    cfg = _cfg(g4_data, "simulator.mode=calibrate", f"simulator.calibrate_into={target}", "n=6", "seed=2",
               "simulator.block_size=6", "spectrum=uniform_1_100gev", "spectrum.max_MeV=2000")
    fraction = run(cfg)
    assert 0.018 < fraction < 0.028  # Si/(Si+W) for EM showers, below the MIP value 3.3 %
    text = target.read_text()
    assert f"sampling_fraction: {fraction:.5f}" in text and "# E_Si / (E_Si + E_W)" in text
