"""Incident-energy spectra (MeV) from `conf/spectrum/*.yaml`: the energies a simulator shoots and a generator is
asked for. Ground-floor vocabulary, so generation draws them without importing a simulator."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detsim.errors import ConfigError


def sample_energies(spectrum: Mapping[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """n incident energies (MeV, float64) drawn from the configured spectrum.

    kinds: powers_of_two (min_exponent..max_exponent, equally often), discrete (values_MeV),
    log_uniform / uniform (min_MeV, max_MeV), fixed (value_MeV).
    """
    kind = spectrum.get("kind")
    try:
        if kind == "powers_of_two":
            exponents = np.arange(int(spectrum["min_exponent"]), int(spectrum["max_exponent"]) + 1)
            return np.exp2(rng.choice(exponents, n)).astype(np.float64)
        if kind == "discrete":
            return rng.choice(np.asarray(spectrum["values_MeV"], dtype=np.float64), n)
        if kind == "log_uniform":
            lo, hi = np.log(float(spectrum["min_MeV"])), np.log(float(spectrum["max_MeV"]))
            return np.exp(rng.uniform(lo, hi, n))
        if kind == "uniform":
            return rng.uniform(float(spectrum["min_MeV"]), float(spectrum["max_MeV"]), n)
        if kind == "fixed":
            return np.full(n, float(spectrum["value_MeV"]))
    except KeyError as exc:
        raise ConfigError(f"spectrum {kind!r}: key {exc.args[0]!r}: expected a value, found none") from exc
    raise ConfigError(
        f"spectrum: key 'kind': expected powers_of_two, discrete, log_uniform, uniform or fixed, found {kind!r}"
    )
