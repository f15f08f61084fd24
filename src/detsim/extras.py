"""The optional extras of `pyproject.toml`, imported on first use: the one place each is deferred.

Every other import in detsim sits at the top of its module. An extra is imported here, inside the function that
returns it, so that detsim imports and runs without it (`detsim-train` of the calorimeter needs no pycbc, the G2Net
CNN trains on a GPU image without it); a caller asks for the module when it needs it. A missing extra is a user
error: one line naming the extra to install (exit 2 in a CLI), not an ImportError from deep inside a run.

  gw       pycbc: waveforms, detector antenna patterns and light travel times, analytic PSDs
  export   onnx (and onnxscript, which torch.onnx's exporter imports): the ONNX graph of a generator

geant4-pybind (`detsim[geant4]`) is deferred in `detsim.sim.geant4.bindings`: what it defers there is the Geant4
application built on the bindings, imported in a worker process only, after the data-set variables are set.
"""

from __future__ import annotations

from types import ModuleType

from detsim.errors import ConfigError


def _missing(extra: str, package: str, exc: ModuleNotFoundError) -> ConfigError:
    return ConfigError(f"expected the {package} package of the optional extra {extra!r}, found no module "
                       f"{exc.name!r} (pip install 'detsim[{extra}]')")


def pycbc() -> ModuleType:
    """`pycbc` (extra `gw`) with the submodules detsim uses loaded: `waveform` (`get_td_waveform`), `detector`
    (`Detector`) and `psd` (the analytic design PSDs)."""
    try:
        import pycbc.detector
        import pycbc.psd
        import pycbc.waveform
    except ModuleNotFoundError as exc:
        raise _missing("gw", "pycbc", exc) from exc
    return pycbc


def onnx() -> ModuleType:
    """`onnx` (extra `export`), after checking that onnxscript, which torch.onnx's dynamo exporter imports, is there."""
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ModuleNotFoundError as exc:
        raise _missing("export", "onnx and onnxscript", exc) from exc
    return onnx
