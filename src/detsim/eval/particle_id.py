"""Particle identification with the shower CNN: photon or electron (signal) against pion (background).

Electromagnetic showers are compact and start early; hadronic ones are wide, deep and patchy, so a
CNN over the layered cells separates them well. Reported as HEP analyses do: ROC AUC and background
rejection (1 / background efficiency) at a fixed signal efficiency, 90% by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from detsim.errors import ConfigError
from detsim.eval.two_sample import BinaryClassifier, fit_classifier
from detsim.eval.features import low_level_inputs
from detsim.metrics.plots import save_roc_plot
from detsim.metrics.roc import PidScore, RocCurve
from detsim.models.shower_cnn import backbone_factory
from detsim.geometry import Geometry
from detsim.io import read_showers
from detsim.showers import CaloShowers


@dataclass
class ParticleIdResult:
    auc: float
    signal_efficiency: float
    background_efficiency: float
    background_rejection: float  # 1 / background_efficiency (bounded by the test-set size)
    n_test: int
    best_epoch: int
    roc: RocCurve = field(repr=False)
    model: BinaryClassifier = field(repr=False)

    def metrics(self) -> dict[str, float]:
        pct = int(round(100 * self.signal_efficiency))
        return {
            "pid_auc": self.auc,
            f"pid_bkg_efficiency_at_{pct}": self.background_efficiency,
            f"pid_bkg_rejection_at_{pct}": self.background_rejection,
            "pid_n_test": float(self.n_test),
            "pid_best_epoch": float(self.best_epoch),
        }


def train_particle_id(
    signal: CaloShowers,
    background: CaloShowers,
    geometry: Geometry,
    cfg: Mapping[str, Any],
    seed: int = 0,
    signal_efficiency: float = 0.9,
    roc_plot: str | Path | None = None,
    labels: tuple[str, str] = ("signal", "pion"),
) -> ParticleIdResult:
    """Train the classifier of `cfg` (a conf/eval/classifier entry, normally `cnn`) on signal (label 1)
    vs background (label 0) showers of one geometry; metrics come from its held-out test split."""
    for name, showers in (("signal", signal), ("background", background)):
        if showers.n_voxels != geometry.n_voxels:
            raise ConfigError(f"{name} showers have {showers.n_voxels} voxels, geometry {geometry.name} has {geometry.n_voxels}")
    scale = float(cfg.get("voxel_scale", 100.0))
    x = np.concatenate([low_level_inputs(signal, scale), low_level_inputs(background, scale)])
    y = np.r_[np.ones(len(signal)), np.zeros(len(background))].astype(np.float32)
    fit = fit_classifier(backbone_factory(cfg["backbone"], geometry), x, y, cfg, seed)
    score = PidScore.from_scores(fit.test_labels, fit.test_scores, signal_efficiency)
    result = ParticleIdResult(
        auc=score.auc,
        signal_efficiency=signal_efficiency,
        background_efficiency=score.background_efficiency,
        background_rejection=score.background_rejection,
        n_test=score.n_test,
        best_epoch=fit.best_epoch,
        roc=score.roc,
        model=fit.model,
    )
    if roc_plot is not None:
        save_roc_plot(score, roc_plot, labels)
    return result


def train_particle_id_from_files(
    signal_path: str | Path,
    background_path: str | Path,
    geometry: Geometry,
    cfg: Mapping[str, Any],
    max_showers: int | None = None,
    **kwargs: Any,
) -> ParticleIdResult:
    """The same from shower files (CaloChallenge or CaloGAN HDF5 layout, or ROOT)."""
    read = dict(n_voxels=geometry.n_voxels, stop=max_showers)
    return train_particle_id(read_showers(signal_path, **read), read_showers(background_path, **read), geometry, cfg, **kwargs)
