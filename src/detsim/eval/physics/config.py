"""The physics report's settings (`conf/eval/physics/default.yaml`), checked once into a `PhysicsConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from detsim.errors import ConfigError


@dataclass(frozen=True)
class PhysicsConfig:
    """The settings of `conf/eval/physics/default.yaml`, checked. Tolerances are accepted intervals [low, high]
    of each check's score (see `Check`); a relative tolerance t in the YAML becomes [-t, t]."""

    energy_bins_gev: tuple[float, ...]
    tolerances: dict[str, tuple[float, float] | None]
    profile_min_fraction: float
    width_quantiles: tuple[float, float]
    n_resamples: int
    min_showers: int
    chunk_rows: int

    # YAML key -> how its value maps to an accepted interval of the score
    RELATIVE = ("response_mean", "response_median", "hit_fraction")  # |gen/ref - 1| <= t
    INTERVALS = ("rms_ratio", "width_ratio")  # gen/ref in [low, high]
    UPPER = ("longitudinal_profile", "radial_profile", "outside_fraction", "outside_fraction_per_bin",
             "max_voxel", "max_voxel_ratio")  # score <= t

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "PhysicsConfig":
        """From the composed `eval.physics` section (plain mapping); one-line ConfigError on a bad value."""
        try:
            bins = tuple(float(e) for e in cfg["energy_bins_gev"])
            tol_cfg = dict(cfg["tolerances"])
            keys = cls.RELATIVE + cls.INTERVALS + cls.UPPER
            missing = [key for key in keys if key not in tol_cfg]
            if missing:
                raise KeyError(f"tolerances.{missing[0]}")
            tolerances = {key: _interval(key, tol_cfg[key]) for key in keys}
            quantiles = tuple(float(q) for q in cfg["width_quantiles"])
            out = cls(bins, tolerances, float(cfg["profile_min_fraction"]), quantiles,  # type: ignore[arg-type]
                      int(cfg["n_resamples"]), int(cfg["min_showers"]), int(cfg["chunk_rows"]))
        except KeyError as exc:
            raise ConfigError(f"eval.physics: missing key {exc.args[0]!r} (conf/eval/physics/default.yaml)") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eval.physics: {exc}") from exc
        if len(bins) < 2 or any(b <= a for a, b in zip(bins, bins[1:])) or bins[0] < 0:
            raise ConfigError(f"eval.physics.energy_bins_gev: expected >= 2 increasing edges (GeV), found {list(bins)}")
        if len(quantiles) != 2 or not 0 <= quantiles[0] < quantiles[1] <= 1:
            raise ConfigError(f"eval.physics.width_quantiles: expected [low, high] in [0, 1], found {list(quantiles)}")
        if out.n_resamples < 2 or out.min_showers < 2 or out.chunk_rows < 1:
            raise ConfigError("eval.physics: n_resamples and min_showers must be >= 2, chunk_rows >= 1")
        return out


def _interval(key: str, value: Any) -> tuple[float, float] | None:
    """A tolerance as the accepted interval of the score; None (YAML null) reports the value without a verdict."""
    if value is None:
        return None
    if key in PhysicsConfig.INTERVALS:
        low, high = (float(v) for v in value)
        if not low < high:
            raise ValueError(f"tolerances.{key}: expected [low, high] with low < high, found {value}")
        return (low, high)
    t = float(value)
    if t < 0:
        raise ValueError(f"tolerances.{key}: expected a value >= 0, found {t}")
    return (-t, t) if key in PhysicsConfig.RELATIVE else (-math.inf, t)
