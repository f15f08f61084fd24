"""The physics report assembled: the checks of each incident-energy bin and over all showers (`BinReport`,
`PhysicsReport`, the `physics` section of metrics.json), from two samples or their summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from detsim.errors import ConfigError
from detsim.eval.physics.checks import (PROFILES, RATIO_CHECKS, Check, Profile, divide, max_voxel_checks,
                                        outside_range, profile_check, ratio_check)
from detsim.eval.physics.config import PhysicsConfig
from detsim.eval.physics.statistics import BinRows
from detsim.eval.physics.summaries import ShowerSummaries, radial_rings, summarize
from detsim.geometry import Geometry
from detsim.showers import CaloShowers


@dataclass
class BinReport:
    """The checks of one incident-energy bin (none when either sample has fewer than `min_showers` in it)."""

    label: str
    e_min_gev: float
    e_max_gev: float
    n_reference: int
    n_generated: int
    checks: dict[str, Check] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)

    @property
    def judged(self) -> list[bool]:
        return [c.passed for c in self.checks.values() if c.passed is not None]

    @property
    def passed(self) -> bool | None:
        return all(self.judged) if self.judged else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "e_min_gev": self.e_min_gev, "e_max_gev": self.e_max_gev,
            "n_reference": self.n_reference, "n_generated": self.n_generated, "passed": self.passed,
            "checks": {k: c.to_dict() for k, c in self.checks.items()},
            "profiles": {k: p.to_dict() for k, p in self.profiles.items()},
        }


@dataclass
class PhysicsReport:
    """Per-bin reports plus the checks over all showers (`overall`); `passed` is True when every judged check
    passed. Showers whose E_inc falls outside every bin are counted (`n_*_unbinned`), not compared."""

    bins: list[BinReport]
    overall: dict[str, Check]
    reference_range: tuple[float, float]
    ring_edges_mm: np.ndarray
    layer_ids: list[int]
    n_reference: int
    n_generated: int
    n_reference_unbinned: int
    n_generated_unbinned: int
    n_resamples: int

    @property
    def passed(self) -> bool:
        judged = [c.passed for c in self.overall.values() if c.passed is not None]
        judged += [p for b in self.bins for p in b.judged]
        return bool(judged) and all(judged)

    def failures(self) -> list[str]:
        """`<bin>/<check>` (or `all/<check>`) of every failed check."""
        out = [f"all/{k}" for k, c in self.overall.items() if c.passed is False]
        return out + [f"{b.label}/{k}" for b in self.bins for k, c in b.checks.items() if c.passed is False]

    def verdict(self, n_shown: int = 6) -> str:
        """`PASS (34 checks)` or `FAIL (2 of 34 checks: 1-3GeV/rms_ratio, all/outside_fraction)`."""
        n = sum(len(b.judged) for b in self.bins) + sum(c.passed is not None for c in self.overall.values())
        failed = self.failures()
        if self.passed:
            return f"PASS ({n} checks)"
        shown = ", ".join(failed[:n_shown]) + (", ..." if len(failed) > n_shown else "")
        return f"FAIL ({len(failed)} of {n} checks: {shown})" if failed else "FAIL (no check could be made)"

    def to_dict(self) -> dict[str, Any]:
        """The `physics` section of metrics.json."""
        return {
            "passed": self.passed,
            "verdict": self.verdict(),
            "failures": self.failures(),
            "n_reference": self.n_reference, "n_generated": self.n_generated,
            "n_reference_unbinned": self.n_reference_unbinned, "n_generated_unbinned": self.n_generated_unbinned,
            "n_resamples": self.n_resamples,
            "reference_range": list(self.reference_range),
            "layer_ids": list(self.layer_ids),
            "ring_edges_mm": np.asarray(self.ring_edges_mm).tolist(),
            "all": {k: c.to_dict() for k, c in self.overall.items()},
            "bins": {b.label: b.to_dict() for b in self.bins},
        }


def _bin_report(label: str, edges: tuple[float, float], ref: BinRows, gen: BinRows, cfg: PhysicsConfig,
                ref_range: tuple[float, float], ref_extremes: np.ndarray, rng: np.random.Generator) -> BinReport:
    report = BinReport(label, edges[0], edges[1], len(ref.response), len(gen.response))
    if min(report.n_reference, report.n_generated) < cfg.min_showers:
        return report
    q, tol = cfg.width_quantiles, cfg.tolerances
    r = {k: v[0] for k, v in ref.stats(np.arange(report.n_reference)[None], q).items()}
    g = {k: v[0] for k, v in gen.stats(np.arange(report.n_generated)[None], q).items()}
    boot = ref.bootstrap(cfg.n_resamples, q, rng)
    checks = report.checks
    for name, (stat, offset) in RATIO_CHECKS.items():
        checks[name] = ratio_check(r[stat], g[stat], boot[stat], tol[name], offset)
    # a reference shower lies outside the range of all the *other* reference showers only if it is an extreme one:
    # this leave-one-out fraction is what an identical sample would show in this bin
    outside = float(outside_range(gen.response, *ref_range).mean())
    loo = float(ref_extremes.mean())
    checks["outside_fraction"] = Check(loo, outside, math.sqrt(loo * (1 - loo) / report.n_generated), outside,
                                       math.nan, tol["outside_fraction_per_bin"])
    checks.update(max_voxel_checks(r["max_voxel"], g["max_voxel"], boot["max_voxel"], cfg))
    for name in PROFILES:
        checks[name], report.profiles[name] = profile_check(r[name], g[name], boot[name], cfg.profile_min_fraction,
                                                            tol[name])
    return report


def _overall(ref: ShowerSummaries, gen: ShowerSummaries, cfg: PhysicsConfig, ref_range: tuple[float, float],
             rng: np.random.Generator) -> dict[str, Check]:
    """Checks over all showers: the tails the tolerances state globally (issue 23's acceptance)."""
    n_ref, n_gen = len(ref), len(gen)
    expected = 2.0 / (n_ref + 1)  # a new draw of the same distribution falls outside the range of n draws
    outside = float(outside_range(divide(gen.total_energy, gen.incident_energy), *ref_range).mean())
    ref_max, gen_max = ref.max_voxel / ref.incident_energy, gen.max_voxel / gen.incident_energy
    boot_max = np.array([ref_max[rng.integers(0, n_ref, n_ref)].max() for _ in range(cfg.n_resamples)])
    unc = math.sqrt(expected * (1 - expected) / n_gen)
    checks = {"outside_fraction": Check(expected, outside, unc, outside, math.nan, cfg.tolerances["outside_fraction"])}
    return checks | max_voxel_checks(float(ref_max.max()), float(gen_max.max()), boot_max, cfg)


def bin_label(low_gev: float, high_gev: float) -> str:
    return f"{low_gev:g}-{high_gev:g}GeV"


def compare_summaries(reference: ShowerSummaries, generated: ShowerSummaries, cfg: PhysicsConfig | Mapping[str, Any],
                      layer_ids: list[int], ring_edges_mm: np.ndarray, seed: int = 0) -> PhysicsReport:
    """The report from two samples' summaries (see `physics_report`)."""
    cfg = cfg if isinstance(cfg, PhysicsConfig) else PhysicsConfig.from_mapping(cfg)
    for name, s in (("reference", reference), ("generated", generated)):
        if len(s) == 0:
            raise ConfigError(f"physics report: the {name} sample holds no showers")
    rng = np.random.default_rng(seed)
    ref_response = reference.total_energy / reference.incident_energy
    ref_range = (float(ref_response.min()), float(ref_response.max()))
    extremes = (ref_response == ref_range[0]) | (ref_response == ref_range[1])
    edges = np.asarray(cfg.energy_bins_gev) * 1000.0  # MeV

    def bin_of(s: ShowerSummaries) -> np.ndarray:
        index = np.searchsorted(edges, s.incident_energy, side="right") - 1
        index[s.incident_energy == edges[-1]] = len(edges) - 2  # the last bin includes its upper edge
        return np.where((index >= 0) & (index < len(edges) - 1), index, -1)

    ref_bin, gen_bin = bin_of(reference), bin_of(generated)
    bins = [
        _bin_report(bin_label(lo, hi), (lo, hi), BinRows.of(reference, ref_bin == i),
                    BinRows.of(generated, gen_bin == i), cfg, ref_range, extremes[ref_bin == i], rng)
        for i, (lo, hi) in enumerate(zip(cfg.energy_bins_gev, cfg.energy_bins_gev[1:]))
    ]
    return PhysicsReport(
        bins, _overall(reference, generated, cfg, ref_range, rng), ref_range, ring_edges_mm, list(layer_ids),
        len(reference), len(generated), int((ref_bin < 0).sum()), int((gen_bin < 0).sum()), cfg.n_resamples,
    )


def physics_report(reference: CaloShowers, generated: CaloShowers, geometry: Geometry,
                   cfg: PhysicsConfig | Mapping[str, Any], threshold_mev: float = 0.0, seed: int = 0) -> PhysicsReport:
    """Compare two in-memory samples bin by bin (`cfg`: the `eval.physics` section of conf/evaluate.yaml).

    Voxels below `threshold_mev` (the readout threshold, `eval.voxel_threshold_mev`) count for nothing; the
    inputs are not changed. `seed` fixes the bootstrap, so the same samples give the same report."""
    cfg = cfg if isinstance(cfg, PhysicsConfig) else PhysicsConfig.from_mapping(cfg)
    ref = summarize(reference, geometry, threshold_mev, cfg.chunk_rows)
    gen = summarize(generated, geometry, threshold_mev, cfg.chunk_rows)
    return compare_summaries(ref, gen, cfg, geometry.layer_ids, radial_rings(geometry)[0], seed)
