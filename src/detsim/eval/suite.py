"""One evaluation of generated showers against a reference: features, histograms, classifier tests.

Pure computation on in-memory shower sets; reading files, plotting and tracking are the caller's
(`detsim.cli.evaluate`), so tests and notebooks can run it on arrays directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from rich.console import Console

from detsim.models.shower_cnn import backbone_factory
from detsim.errors import ConfigError
from detsim.eval.two_sample import TwoSampleResult, two_sample_test
from detsim.eval.features import FeatureSpec, ShowerFeatures, high_level_inputs, low_level_inputs
from detsim.eval.physics import PhysicsReport, physics_report
from detsim.metrics.separation import HistComparison, compare_features, compare_voxel_energies
from detsim.geometry import Geometry
from detsim.readout import above_threshold
from detsim.showers import CaloShowers

CLASSIFIER_KINDS = ("low", "high", "cnn")


@dataclass
class EvaluationResult:
    """Everything an evaluation measured; `metrics()` is what goes into metrics.json."""

    specs: dict[str, FeatureSpec]
    histograms: dict[str, HistComparison]
    classifiers: dict[str, TwoSampleResult] = field(default_factory=dict)
    n_reference: int = 0
    n_generated: int = 0
    physics: PhysicsReport | None = None

    @property
    def separation_powers(self) -> dict[str, float]:
        return {name: h.separation_power for name, h in self.histograms.items()}

    def metrics(self) -> dict[str, Any]:
        seps = self.separation_powers
        out: dict[str, Any] = {
            "n_reference": self.n_reference,
            "n_generated": self.n_generated,
            "separation_power": seps,
            "separation_power_mean": float(np.mean(list(seps.values()))) if seps else float("nan"),
        }
        for kind, result in self.classifiers.items():
            out.update(result.as_dict(kind))
        if self.physics is not None:
            out["physics"] = self.physics.to_dict()
        return out


def evaluate_showers(
    reference: CaloShowers,
    generated: CaloShowers,
    geometry: Geometry,
    eval_cfg: Mapping[str, Any],
    classifiers: tuple[str, ...] = ("low", "high"),
    seed: int = 0,
    console: Console | None = None,
) -> EvaluationResult:
    """Features and separation powers of every feature, the physics report (when `eval_cfg` has an enabled
    `physics` section), then the requested classifier tests, all on the showers read through
    `eval_cfg.voxel_threshold_mev` (conf/evaluate.yaml)."""
    console = console or Console(stderr=True)
    unknown = set(classifiers) - set(CLASSIFIER_KINDS)
    if unknown:
        raise ConfigError(f"classifiers: unknown {sorted(unknown)}; choose from {CLASSIFIER_KINDS}")
    for name, showers in (("reference", reference), ("generated", generated)):
        if showers.n_voxels != geometry.n_voxels:
            raise ConfigError(
                f"{name} showers have {showers.n_voxels} voxels, geometry {geometry.name} has {geometry.n_voxels}"
            )
    threshold = float(eval_cfg.get("voxel_threshold_mev") or 0.0)
    reference, generated = above_threshold(reference, threshold), above_threshold(generated, threshold)
    hcfg = eval_cfg["histograms"]
    features = ShowerFeatures(geometry, threshold_mev=float(hcfg.get("sparsity_threshold_mev", 0.0)))
    console.log(f"features of {len(reference)} reference and {len(generated)} generated showers")
    f_ref, f_gen = features(reference), features(generated)
    log_kinds = set(hcfg.get("log_kinds", ["energy"]))
    histograms = compare_features(
        f_ref,
        f_gen,
        n_bins=int(hcfg.get("n_bins", 50)),
        log_names={s.name for s in features.specs if s.kind in log_kinds},
        quantiles=tuple(hcfg.get("quantiles", (0.0, 1.0))),
    )
    specs = {s.name: s for s in features.specs}
    if hcfg.get("voxel_energy", True):
        histograms["voxel_energy"] = compare_voxel_energies(
            reference.showers, generated.showers, int(hcfg.get("voxel_bins", 50)), float(hcfg.get("voxel_min_energy_mev", 1e-2))
        )
        specs["voxel_energy"] = FeatureSpec("voxel_energy", "voxel")
    result = EvaluationResult(specs, histograms, n_reference=len(reference), n_generated=len(generated))
    physics_cfg = eval_cfg.get("physics")
    if physics_cfg and physics_cfg.get("enabled", True):  # before the classifiers: its verdict comes in seconds
        result.physics = physics_report(reference, generated, geometry, physics_cfg, threshold, seed)
        console.log(f"physics report: {result.physics.verdict()}")
    for kind in classifiers:
        cfg = eval_cfg["cnn" if kind == "cnn" else "classifier"]
        console.log(f"classifier two-sample test on {kind}-level inputs")
        if kind == "high":
            x_ref = high_level_inputs(reference, features, f_ref)
            x_gen = high_level_inputs(generated, features, f_gen)
        else:
            scale = float(cfg.get("voxel_scale", 100.0))
            x_ref, x_gen = low_level_inputs(reference, scale), low_level_inputs(generated, scale)
        result.classifiers[kind] = two_sample_test(
            x_ref, x_gen, backbone_factory(cfg["backbone"], geometry), cfg, seed, label=f"{kind}-level"
        )
        del x_ref, x_gen
    return result
