"""Where the Geant4 data sets are: the 12 `G4*DATA` variables, or folders under `geant4.data_dir`.

geant4-pybind refuses to import unless all 12 variables name existing folders, so the backend checks
them before any child process imports it and names every missing one (exit 2, not an import crash).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from detsim.errors import DetsimError

# variable -> folder-name prefix of the data set as `geant4-config --install-datasets` lays it out
DATASETS: dict[str, str] = {
    "G4NEUTRONHPDATA": "G4NDL",
    "G4LEDATA": "G4EMLOW",
    "G4LEVELGAMMADATA": "PhotonEvaporation",
    "G4RADIOACTIVEDATA": "RadioactiveDecay",
    "G4PARTICLEXSDATA": "G4PARTICLEXS",
    "G4PIIDATA": "G4PII",
    "G4REALSURFACEDATA": "RealSurface",
    "G4SAIDXSDATA": "G4SAIDDATA",
    "G4ABLADATA": "G4ABLA",
    "G4INCLDATA": "G4INCL",
    "G4ENSDFSTATEDATA": "G4ENSDFSTATE",
    "G4CHANNELINGDATA": "G4CHANNELING",
}
STANDIN_MARKER = "DETSIM_STANDIN.txt"  # written into the stand-in G4EMLOW folder


class MissingDataSetError(DetsimError):
    """One or more Geant4 data sets are not where the environment or `geant4.data_dir` says."""


def _from_data_dir(data_dir: Path, prefix: str) -> Path | None:
    matches = sorted(p for p in data_dir.glob(f"{prefix}*") if p.is_dir())
    return matches[-1] if matches else None


def resolve_datasets(data_dir: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variable -> folder for all 12 data sets; a set variable wins, then `data_dir/<prefix>*`.

    Raises MissingDataSetError naming every data set that is neither set nor found.
    """
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    missing: list[str] = []
    for var, prefix in DATASETS.items():
        value = environ.get(var)
        if value and Path(value).is_dir():
            found[var] = value
            continue
        folder = _from_data_dir(Path(data_dir), prefix) if data_dir else None
        if folder is not None:
            found[var] = str(folder)
        else:
            why = f"{var}={value} (no such folder)" if value else var
            missing.append(f"{why} [{prefix}]")
    if missing:
        where = f"geant4.data_dir={data_dir}" if data_dir else "geant4.data_dir unset"
        raise MissingDataSetError(
            f"Geant4 data sets: expected all 12 (G4*DATA variables or folders under geant4.data_dir), "
            f"found these missing: {', '.join(missing)} ({where}; install them with `geant4-config "
            f"--install-datasets`, or build the EM stand-in: python -m detsim.sim.geant4.standin <dir>)"
        )
    return found


def is_standin(datasets: Mapping[str, str]) -> bool:
    """True when the EM data are detsim's stand-in rather than Geant4's own G4EMLOW."""
    return (Path(datasets["G4LEDATA"]) / STANDIN_MARKER).is_file()
