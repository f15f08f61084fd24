"""The gravitational-wave wing (G2Net): strain files, BBH priors and waveforms, detector noise, synthesis,
whitening, the datamodule, the CNNs, the matched-filter baseline and its template bank, reports.

Modules are named after the physics, as pycbc names them. Nothing here imports the calorimeter side, and the
calorimeter side never imports this wing (checked by the import contracts in `pyproject.toml`).
`synthesise`/`run` are loaded on first use so `detsim.gw.study.device_run` imports where pycbc is absent.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("run", "synthesise"):
        from detsim.gw import synth

        return getattr(synth, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["run", "synthesise"]
