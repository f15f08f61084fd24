"""The parametric dataset-2 simulator stays calibrated to Geant4: figures of 10 GeV electrons against the
Geant4 values stored beside the constants (conf/detector/si_w_par04.yaml, `geant4_reference`; measured with
the stand-in Geant4 data sets, docs/studies/2026-11-30-parametric-vs-geant4.md). A change of the spot model,
threshold, primary-track or profile constants that undoes the calibration moves one of them out of tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from detsim.paths import config_dir
from detsim.sim import quick_sample


@pytest.fixture(scope="module")
def reference():
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "detector" / "si_w_par04.yaml"))["geant4_reference"]


@pytest.fixture(scope="module")
def showers(reference):
    e = np.full(int(reference["n_parametric"]), float(reference["energy_MeV"]))
    return quick_sample("calochallenge_ds2", "electron", energies=e, seed=15).showers.reshape(len(e), 45, -1)


def _check(measured: float, target: dict) -> None:
    assert measured == pytest.approx(float(target["value"]), rel=float(target["rel_tolerance"])), (
        f"parametric {measured:.5f} vs Geant4 {target['value']} (+-{target['rel_tolerance']:.0%})"
    )


def test_non_zero_voxel_fraction_matches_geant4(showers, reference):
    _check(float((showers > 0).mean()), reference["nonzero_voxel_fraction"])


def test_first_layer_energy_fraction_matches_geant4(showers, reference):
    layers = showers.sum(axis=2, dtype=np.float64)
    _check(float((layers[:, 0] / layers.sum(axis=1)).mean()), reference["first_layer_fraction"])


def test_hottest_voxel_matches_geant4(showers, reference):
    hottest = showers.reshape(len(showers), -1).max(axis=1) / float(reference["energy_MeV"])
    _check(float(np.median(hottest)), reference["hottest_voxel_fraction_median"])


def test_smallest_hit_is_the_geant4_threshold(showers, reference):
    """The Geant4 files' smallest non-zero voxel is their threshold (15.15 keV / sampling fraction)."""
    smallest = float(showers[showers > 0].min())
    assert smallest >= float(reference["smallest_nonzero_MeV"]) * (1 - 1e-4)
    assert smallest < float(reference["smallest_nonzero_MeV"]) * 1.05
