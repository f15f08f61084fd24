"""The stand-in Geant4 data sets: file formats Geant4 reads, and physics checked against PDG numbers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detsim.sim.geant4 import brems, photoabsorption
from detsim.sim.geant4.datasets import DATASETS, MissingDataSetError, is_standin, resolve_datasets
from detsim.sim.geant4.standin import build_standin

ROOT = Path(__file__).resolve().parents[1]


def _read_sb(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = path.read_text().split()
    _, nx, ny = (int(v) for v in values[:3])
    numbers = np.array(values[3:], dtype=float)
    return numbers[:nx], numbers[nx : nx + ny], numbers[nx + ny :].reshape(ny, nx)


def test_builder_writes_all_12_and_the_em_tables(tmp_path: Path) -> None:
    env = build_standin(tmp_path)
    assert set(env) == set(DATASETS) and all(Path(v).is_dir() for v in env.values())
    assert is_standin(env)
    x, y, v = _read_sb(Path(env["G4LEDATA"]) / "brem_SB" / "br74")
    assert x.size == 32 and y.size == 57 and v.shape == (57, 32) and np.all(v > 0)
    assert (Path(env["G4LEDATA"]) / "epics2017" / "phot" / "pe-cs-14.dat").is_file()


def test_brems_table_gives_the_pdg_radiation_length_of_tungsten() -> None:
    """High-energy energy loss from the tables, -dE/dx = E n Z^2 int chi dx, equals E / X0 (PDG: W 0.3504 cm)."""
    x, y, v = brems.sb_table(74)
    row = v[np.argmin(np.abs(y - np.log(1e4)))]
    integral_mb = np.trapezoid(row, x) if hasattr(np, "trapezoid") else np.trapz(row, x)
    n_atoms = 19.3 * 6.02214e23 / 183.84
    x0_cm = 1.0 / (n_atoms * 74**2 * integral_mb * 1e-27)
    assert x0_cm == pytest.approx(0.3504, rel=0.04)


def test_photoelectric_table_has_a_k_edge_and_falls_with_energy() -> None:
    z = 74
    edge = photoabsorption.k_edge_mev(z)
    below, above = photoabsorption.cross_section_barn(z, np.array([edge * 0.999, edge * 1.001]))
    assert 3 < above / below < 7
    s = photoabsorption.cross_section_barn(z, np.array([0.1, 0.2, 1.0]))
    assert s[0] / s[1] == pytest.approx(8.0, rel=0.01) and s[2] < s[1]


def test_missing_data_sets_are_named(tmp_path: Path) -> None:
    (tmp_path / "G4EMLOW8.6").mkdir()
    with pytest.raises(MissingDataSetError) as err:
        resolve_datasets(tmp_path, environ={})
    message = str(err.value)
    assert "G4NEUTRONHPDATA" in message and "G4CHANNELINGDATA" in message and "G4LEDATA" not in message
    found = resolve_datasets(tmp_path, environ={v: str(tmp_path / "G4EMLOW8.6") for v in DATASETS})
    assert found["G4LEDATA"].endswith("G4EMLOW8.6")


def test_cli_exits_2_naming_missing_data_sets(tmp_path: Path) -> None:
    if importlib.util.find_spec("geant4_pybind") is None:  # never import it here: it needs the data variables
        pytest.skip("geant4-pybind not installed (pip install 'detsim[geant4]')")
    env = {k: v for k, v in os.environ.items() if k not in DATASETS}
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run(
        [sys.executable, "-m", "detsim.cli.simulate", "simulator=geant4", "geometry=calochallenge_ds2", "n=2",
         f"geant4.data_dir={tmp_path}", f"out={tmp_path / 'x.h5'}", f"hydra.run.dir={tmp_path / 'h'}"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "G4LEDATA" in proc.stderr and "G4ENSDFSTATEDATA" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.h5").exists()


def test_without_the_bindings_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from detsim.errors import ConfigError
    from detsim.sim.geant4 import bindings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "geant4_pybind" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'detsim\[geant4\]'"):
        bindings.require()
