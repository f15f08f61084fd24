"""The physics report (detsim.eval.physics): it recovers known resolutions, passes identical distributions (toy
showers and Geant4 vs Geant4), and fails planted tails on the checks that should see them while the bulk passes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import SHARED_DATA
from detsim.config import compose_config, to_plain
from detsim.errors import ConfigError
from detsim.eval.physics import PhysicsConfig, flat_physics_metrics, physics_report, radial_rings, summarize
from detsim.geometry import Geometry, load_geometry
from detsim.showers import CaloShowers

TOY = Geometry.from_config({"name": "toy", "uniform": {"n_layers": 3, "r_edges": [0, 1, 2, 4], "n_alpha": 2}})
# mean energy fraction per voxel: layer (rows) x ring (columns), the same in both angular bins
TOY_SHAPE = np.array([[0.10, 0.04, 0.02], [0.16, 0.06, 0.03], [0.06, 0.02, 0.01]]) / 2
TOY_SIGMA = {0: 0.10, 1: 0.05}  # rms of E_tot/E_inc in the 1-3 and 3-10 GeV bins
N_TOY = 4000
G4_FILES = ("g4_ds2_e_1_100gev_train.h5", "g4_ds2_e_1_100gev_test.h5")
N_G4 = 10_000
BULK = ("response_median", "width_ratio", "hit_fraction", "longitudinal_profile", "radial_profile")


def physics_config(geometry: str = "calochallenge_ds2", **changes: Any) -> dict[str, Any]:
    """The shipped `eval.physics` section as detsim-evaluate composes it, with `changes`."""
    cfg = to_plain(compose_config("evaluate", [f"geometry={geometry}", "reference=r.h5", "generated=g.h5"]).eval.physics)
    return cfg | changes


def toy_showers(n: int, seed: int, tail_fraction: float = 0.0) -> CaloShowers:
    """E_inc log-uniform in 1-10 GeV; E_tot/E_inc ~ N(1, TOY_SIGMA of the bin), spread over the voxels as TOY_SHAPE
    with 20 % log-normal voxel noise. `tail_fraction` of the showers get E_tot/E_inc = 1 + |N(0, 1)| instead."""
    rng = np.random.default_rng(seed)
    e_inc = 1000.0 * 10 ** rng.uniform(0.0, 1.0, n)
    sigma = np.where(e_inc < 3000.0, TOY_SIGMA[0], TOY_SIGMA[1])
    response = rng.normal(1.0, sigma)
    tail = rng.random(n) < tail_fraction
    response[tail] = 1.0 + np.abs(rng.normal(0.0, 1.0, int(tail.sum())))
    shape = np.repeat(TOY_SHAPE[:, None, :], 2, axis=1).reshape(-1)  # voxel order: ring fastest, then angle, layer
    cells = shape * rng.lognormal(0.0, 0.2, (n, TOY.n_voxels))
    cells /= cells.sum(axis=1, keepdims=True)
    return CaloShowers(e_inc, cells * (response * e_inc)[:, None])


def toy_config(**changes: Any) -> dict[str, Any]:
    return physics_config(**({"energy_bins_gev": [1, 3, 10]} | changes))


@pytest.fixture(scope="module")
def toy_reference() -> CaloShowers:
    return toy_showers(N_TOY, seed=1)


def failed(report) -> set[str]:
    return set(report.failures())


def test_the_report_recovers_a_known_resolution(toy_reference):
    report = physics_report(toy_reference, toy_showers(N_TOY, seed=2), TOY, toy_config(), seed=0)
    for index, sigma in TOY_SIGMA.items():
        rms, width = report.bins[index].checks["rms_ratio"], report.bins[index].checks["width_ratio"]
        n = report.bins[index].n_reference
        expected_unc = sigma / math.sqrt(2 * n)  # the standard error of a Gaussian rms
        assert rms.reference_unc == pytest.approx(expected_unc, rel=0.25)
        assert abs(rms.reference - sigma) < 4 * expected_unc and abs(rms.generated - sigma) < 4 * expected_unc
        assert abs(width.reference - sigma) < 4 * width.reference_unc  # a Gaussian's 16-84 % half-range is sigma
        assert report.bins[index].checks["response_mean"].reference == pytest.approx(1.0, abs=4 * sigma / math.sqrt(n))
    assert report.passed, report.verdict()  # an independent sample of the same distribution
    assert report.bins[0].label == "1-3GeV" and report.n_reference_unbinned == 0


def test_the_same_seed_gives_the_same_report(toy_reference):
    gen = toy_showers(N_TOY, seed=2)
    first, second = (physics_report(toy_reference, gen, TOY, toy_config(), seed=0).to_dict() for _ in range(2))
    assert first == second


def test_one_voxel_above_its_incident_energy_fails_the_max_voxel_checks_only(toy_reference):
    gen = toy_showers(N_TOY, seed=3)
    row = int(np.argmax(gen.incident_energy < 3000.0))  # a shower of the first bin
    gen.showers[row, np.argmax(gen.showers[row])] = 1.2 * gen.incident_energy[row]
    report = physics_report(toy_reference, gen, TOY, toy_config(), seed=0)
    assert failed(report) == {"all/max_voxel", "all/max_voxel_ratio", "1-3GeV/max_voxel", "1-3GeV/max_voxel_ratio"}
    assert report.bins[0].checks["max_voxel"].generated == pytest.approx(1.2, rel=1e-6)
    assert 1 / N_TOY <= report.overall["outside_fraction"].generated <= 0.001  # this shower, within the 0.1 %


def test_a_one_percent_tail_fails_rms_and_range_while_the_bulk_passes(toy_reference):
    report = physics_report(toy_reference, toy_showers(N_TOY, seed=4, tail_fraction=0.01), TOY, toy_config(), seed=0)
    assert not report.passed
    assert {"all/outside_fraction", "1-3GeV/rms_ratio", "3-10GeV/rms_ratio"} <= failed(report)
    for b in report.bins:
        assert all(b.checks[name].passed for name in BULK), b.label
        assert b.checks["rms_ratio"].score > 1.2 and b.checks["width_ratio"].score < 1.1


def test_showers_outside_every_bin_are_counted_and_thin_bins_not_judged(toy_reference):
    gen = toy_showers(N_TOY, seed=5)
    report = physics_report(toy_reference, gen, TOY, toy_config(energy_bins_gev=[1, 3, 5], min_showers=3000), seed=0)
    expected = int((gen.incident_energy > 5000.0).sum())
    assert report.n_generated_unbinned == expected > 0 and report.to_dict()["n_generated_unbinned"] == expected
    assert report.bins[1].checks == {} and report.bins[1].passed is None  # under min_showers: reported, not judged
    assert report.passed == all(c.passed for c in report.overall.values())


def test_metrics_and_mlflow_names(toy_reference):
    section = physics_report(toy_reference, toy_showers(N_TOY, seed=2), TOY, toy_config(), seed=0).to_dict()
    assert section["passed"] is True and section["bins"]["3-10GeV"]["checks"]["rms_ratio"]["tolerance"] == [0.85, 1.2]
    flat = flat_physics_metrics(section)
    assert flat["physics/passed"] == 1.0 and 0.85 < flat["physics/1-3GeV/rms_ratio"] < 1.2
    assert flat["physics/1-3GeV/rms_ratio_passed"] == 1.0 and flat["physics/all/outside_fraction_passed"] == 1.0
    names = sorted(flat)  # MLflow's file store keeps a metric as a file: no name may be a folder of another
    assert not any(b.startswith(a + "/") for a, b in zip(names, names[1:]))


def test_per_geometry_energy_bins_and_bad_config():
    assert physics_config()["energy_bins_gev"] == [1, 3, 10, 30, 100]
    assert physics_config("calochallenge_ds1_photons")["energy_bins_gev"][0] < 0.256  # 256 MeV showers are binned
    with pytest.raises(ConfigError, match="energy_bins_gev"):
        PhysicsConfig.from_mapping(physics_config(energy_bins_gev=[3, 1]))
    with pytest.raises(ConfigError, match="rms_ratio"):
        PhysicsConfig.from_mapping(physics_config(tolerances={**physics_config()["tolerances"], "rms_ratio": [1.2, 0.8]}))


def test_rings_of_a_geometry_with_per_layer_binning():
    """Dataset-1 layers are binned differently: rings are the union of their edges, each voxel in its centre's ring."""
    ds1 = load_geometry(Path(__file__).resolve().parents[1] / "conf" / "geometry" / "calochallenge_ds1_photons.yaml")
    edges, ring = radial_rings(ds1)
    r = ds1.cell_centres_polar[0]
    assert len(ring) == ds1.n_voxels and np.all((edges[ring, 0] <= r) & (r < edges[ring, 1]))
    summary = summarize(CaloShowers(np.full(2, 1000.0), np.ones((2, ds1.n_voxels))), ds1)
    assert summary.ring_energy.sum(axis=1) == pytest.approx(summary.total_energy)
    assert list(summary.layer_energy[0]) == [layer.n_voxels for layer in ds1.layers]


# --- Geant4 vs Geant4 (the shared development data; skipped where it is absent) ---------------------------------------
@pytest.fixture(scope="module")
def geant4_pair() -> tuple[CaloShowers, CaloShowers, Geometry, float]:
    """train[:10000] vs test (10,000), both read through dataset 2's readout threshold, as detsim-evaluate reads them."""
    from detsim.eval.suite import above_threshold
    from detsim.io import read_showers

    paths = [SHARED_DATA / "geant4" / name for name in G4_FILES]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"Geant4 development data not found at {paths[0].parent} (set DETSIM_SHARED_DATA)")
    cfg = compose_config("evaluate", ["geometry=calochallenge_ds2", "reference=r.h5", "generated=g.h5"])
    geometry = load_geometry(to_plain(cfg.geometry))
    threshold = float(cfg.eval.voxel_threshold_mev)
    ref, gen = (above_threshold(read_showers(p, n_voxels=geometry.n_voxels, stop=N_G4), threshold) for p in paths)
    return ref, gen, geometry, threshold


def test_geant4_against_geant4_passes_every_check(geant4_pair):
    ref, gen, geometry, threshold = geant4_pair
    report = physics_report(ref, gen, geometry, physics_config(), threshold, seed=0)
    assert report.passed, report.verdict()
    assert len(ref) == len(gen) == N_G4 and report.n_reference_unbinned == report.n_generated_unbinned == 0
    assert all(len(b.judged) == 9 for b in report.bins)  # every judged check of every bin was made


def test_geant4_with_a_planted_tail_fails(geant4_pair):
    """0.5 % of the showers scaled by 3: the tail tests see it, the bulk statistics do not."""
    ref, gen, geometry, threshold = geant4_pair
    rng = np.random.default_rng(7)
    showers = gen.showers.copy()
    showers[rng.choice(len(gen), len(gen) // 200, replace=False)] *= 3.0
    report = physics_report(ref, CaloShowers(gen.incident_energy, showers), geometry, physics_config(), threshold, seed=0)
    assert not report.passed
    assert {"all/outside_fraction"} | {f"{b.label}/rms_ratio" for b in report.bins} <= failed(report)
    for b in report.bins:
        assert all(b.checks[name].passed for name in BULK), b.label


def test_non_finite_generated_showers_fail_the_report(toy_reference):
    """A diverged generator must not pass: NaN showers count as outside the range and fail every statistic."""
    gen = toy_showers(N_TOY, seed=6)
    gen.showers[:100] = np.nan
    report = physics_report(toy_reference, gen, TOY, toy_config(), seed=0)
    assert not report.passed and report.overall["outside_fraction"].generated >= 100 / N_TOY
    assert {"all/outside_fraction", "all/max_voxel"} <= failed(report)


def test_the_readout_threshold_is_applied_to_energies_and_hits(toy_reference):
    """Sub-threshold deposits count for nothing: spraying them into empty voxels changes neither the response nor
    the hit fraction, and the caller's showers are left as they were."""
    showers = toy_showers(N_TOY, seed=2)
    clean = showers.showers.copy()
    clean[:, ::2] = 0.0  # empty voxels
    sprayed = clean.copy()
    sprayed[:, ::2] = 0.4  # MeV, below the 0.5 MeV threshold
    assert clean[clean > 0].min() >= 0.5  # every real deposit is read out
    plain, noisy = (physics_report(toy_reference, CaloShowers(showers.incident_energy, s), TOY, toy_config(),
                                   threshold_mev=0.5, seed=0) for s in (clean, sprayed))
    assert plain.to_dict() == noisy.to_dict()
    assert plain.bins[0].checks["hit_fraction"].generated == pytest.approx(0.5)
    assert np.all(sprayed[:, ::2] == np.float32(0.4))
