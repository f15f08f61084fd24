"""One comparison of the physics report (`Check`: reference, generated, score, tolerance, verdict), a compared
profile (`Profile`), and how each kind of check computes its score and uncertainty."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detsim.eval.physics.config import PhysicsConfig

PROFILES = ("longitudinal_profile", "radial_profile")


@dataclass(frozen=True)
class Check:
    """One comparison. `score` is what the tolerance applies to: gen/ref - 1 (response_mean, response_median,
    hit_fraction), gen/ref (rms_ratio, width_ratio, max_voxel_ratio), the largest |gen/ref - 1| over the profile's
    checked entries (profiles), or the generated value itself (outside_fraction, max_voxel). `reference_unc` and
    `score_unc` are the bootstrap standard deviations from the reference's finite sample."""

    reference: float
    generated: float
    reference_unc: float
    score: float
    score_unc: float
    tolerance: tuple[float, float] | None  # accepted [low, high] of the score; None: reported, not judged
    at: int | None = None  # profiles: the index (layer position or ring) of the largest deviation

    @property
    def passed(self) -> bool | None:
        if self.tolerance is None:
            return None
        return bool(self.tolerance[0] <= self.score <= self.tolerance[1])  # NaN fails

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tolerance"] = None if self.tolerance is None else [_finite_or_none(t) for t in self.tolerance]
        out["passed"] = self.passed
        return out


@dataclass
class Profile:
    """A mean profile (energy fraction per layer or ring) of both samples, the reference's bootstrap uncertainty,
    and which entries were checked (those holding more than `profile_min_fraction` of the reference's energy)."""

    reference: np.ndarray
    generated: np.ndarray
    reference_unc: np.ndarray
    checked: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def divide(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b)


def _std(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std()) if finite.size > 1 else math.nan


def ratio_check(ref: float, gen: float, boot: np.ndarray, tolerance: tuple[float, float] | None,
                offset: float) -> Check:
    """gen/ref - offset (offset 1: relative deviation; 0: ratio); its uncertainty from the resampled references."""
    return Check(float(ref), float(gen), _std(boot), float(divide(gen, ref)) - offset,
                 _std(divide(gen, boot) - offset), tolerance)


def max_voxel_checks(ref: float, gen: float, boot: np.ndarray, cfg: PhysicsConfig) -> dict[str, Check]:
    """The largest voxel / E_inc: at most 1 (energy conservation) and at most a factor above the reference's."""
    return {
        "max_voxel": Check(float(ref), float(gen), _std(boot), float(gen), math.nan, cfg.tolerances["max_voxel"]),
        "max_voxel_ratio": ratio_check(ref, gen, boot, cfg.tolerances["max_voxel_ratio"], 0.0),
    }


def profile_check(ref: np.ndarray, gen: np.ndarray, boot: np.ndarray, min_fraction: float,
                  tolerance: tuple[float, float] | None) -> tuple[Check, Profile]:
    """The largest |gen/ref - 1| over the entries holding more than `min_fraction` of the reference's energy."""
    checked = ref > min_fraction
    profile = Profile(ref, gen, boot.std(axis=0), checked)
    if not checked.any():
        return Check(math.nan, math.nan, math.nan, math.nan, math.nan, None), profile
    deviation = np.where(checked, np.abs(divide(gen, ref) - 1.0), -1.0)
    at = int(np.argmax(deviation))
    unc = _std(np.abs(divide(gen[at], boot[:, at]) - 1.0))
    return Check(float(ref[at]), float(gen[at]), float(profile.reference_unc[at]), float(deviation[at]), unc,
                 tolerance, at), profile


def outside_range(response: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Outside [lo, hi]; a NaN response (a diverged generator) counts as outside, not as inside."""
    return ~((response >= lo) & (response <= hi))


# per-bin check -> (statistic, offset): the score is gen/ref - offset
RATIO_CHECKS = {
    "response_mean": ("response_mean", 1.0),
    "response_median": ("response_median", 1.0),
    "rms_ratio": ("rms", 0.0),
    "width_ratio": ("width", 0.0),
    "hit_fraction": ("hit_fraction", 1.0),
}
