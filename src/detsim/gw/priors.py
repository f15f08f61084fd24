"""Priors of binary-black-hole injections, read from `conf/gw/priors/*.yaml`.

Each parameter is `{dist: <kind>, ...}`; kinds are the few a BBH population needs: `uniform`,
`loguniform`, `uniform_volume` (p(d) ~ d^2), `cos` (declination-like: uniform on the sphere),
`sin` (inclination-like), `fixed`. Draws are per sample from that sample's own generator, so sample i
is the same whatever n is.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from detsim.errors import ConfigError

PARAMETERS = (
    "mass1", "mass2", "spin1z", "spin2z", "distance", "ra", "dec",
    "inclination", "polarization", "coa_phase", "t_merger", "snr",
)


def plain_priors(priors: Mapping[str, Any]) -> dict[str, Any]:
    """The priors as plain dicts and lists, read through the Mapping and Sequence interfaces (so a Hydra DictConfig
    resolves its interpolations) without importing OmegaConf, which the GPU image that trains on samples lacks."""
    return _plain(priors)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(value[key]) for key in value}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # a ListConfig
        return [_plain(v) for v in value]
    return value


def draw_one(name: str, spec: Mapping[str, Any], rng: np.random.Generator) -> float:
    kind = spec.get("dist")
    if kind == "fixed":
        return float(spec["value"])
    low, high = float(spec.get("low", 0.0)), float(spec.get("high", 1.0))
    if high < low:
        raise ConfigError(f"prior {name}: high={high} < low={low}")
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    if kind == "uniform_volume":
        return float(rng.uniform(low**3, high**3) ** (1.0 / 3.0))
    if kind == "cos":
        return float(np.arcsin(rng.uniform(np.sin(low), np.sin(high))))
    if kind == "sin":
        return float(np.arccos(rng.uniform(np.cos(high), np.cos(low))))
    raise ConfigError(f"prior {name}: unknown dist {kind!r}; use uniform, loguniform, uniform_volume, cos, sin, fixed")


def draw_parameters(priors: Mapping[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """One injection's parameters; mass1 >= mass2 (swapped with their spins if drawn the other way)."""
    missing = [p for p in PARAMETERS if p not in priors]
    if missing:
        raise ConfigError(f"gw priors lack {missing}; every one of {list(PARAMETERS)} needs a prior")
    params = {name: draw_one(name, priors[name], rng) for name in PARAMETERS}
    if params["mass2"] > params["mass1"]:
        params["mass1"], params["mass2"] = params["mass2"], params["mass1"]
        params["spin1z"], params["spin2z"] = params["spin2z"], params["spin1z"]
    return params
