"""The optional extra `detsim[geant4]` (geant4-pybind): the one place it is imported, in a worker process only.

The bindings are one Geant4 per process, may crash at interpreter teardown, and must find the 12 data-set variables
set when they are imported; so the CLI's own process never imports them (`require` only asks whether they are
installed), and a worker imports them through `load`, after setting the variables, together with the application
built on them (`build`, which imports geant4_pybind at its top). Every other import in detsim sits at the top of its
module (`detsim.extras` defers the other extras).
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Mapping

from detsim.errors import ConfigError

INSTALL_HINT = "pip install 'detsim[geant4]'"


def require() -> None:
    """Exit-2 error (not an ImportError deep in a worker) when the optional extra is not installed."""
    if importlib.util.find_spec("geant4_pybind") is None:
        raise ConfigError(f"simulator=geant4: expected the geant4-pybind package, found it not installed ({INSTALL_HINT})")


def load(environ: Mapping[str, str]) -> tuple[ModuleType, ModuleType]:
    """In a worker: set the data-set variables `environ`, then import geant4_pybind and `build`; return both."""
    os.environ.update(environ)
    # All 12 data-set variables are set, so the bindings need not look for data sets themselves. Saying so
    # with GEANT4_DATA_DIR matters under CI=true, where geant4-pybind 0.1.3 otherwise lists (and would clean)
    # ~/.geant4_pybind, which does not exist ("ImportError: initialization failed").
    os.environ.setdefault("GEANT4_DATA_DIR", os.path.dirname(environ["G4LEDATA"]))
    try:
        import geant4_pybind
    except ModuleNotFoundError as exc:
        raise ConfigError(f"simulator=geant4: expected the geant4-pybind package, found no module {exc.name!r} "
                          f"({INSTALL_HINT})") from exc
    from detsim.sim.geant4 import build

    return geant4_pybind, build
