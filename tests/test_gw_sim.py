"""Synthetic G2Net data: injected SNR (checked with pycbc's own sigma), determinism, layout."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from detsim.gw.io import read_labels, read_sample, sample_path
from detsim.paths import config_dir
from detsim.gw.synth import SynthSpec, iter_block, synthesise


@pytest.fixture(scope="module")
def sim_cfg():
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("simulate", overrides=["simulator=gw"])
    return cfg.simulator


def test_injected_snr_matches_pycbc_sigma(sim_cfg):
    from pycbc.filter import sigma
    from pycbc.types import FrequencySeries, TimeSeries

    spec = SynthSpec.from_config({**sim_cfg, "signal_fraction": 1.0}, seed=3)
    fs = spec.sample_rate
    for strain, signal, row in iter_block(spec, range(4)):
        assert row["target"] == 1 and np.abs(strain - signal).max() > 0
        per_det = []
        for j, det in enumerate(spec.detectors):
            psd = FrequencySeries(spec.psd(j, spec.n_samples), delta_f=fs / spec.n_samples)
            per_det.append(sigma(TimeSeries(signal[j], delta_t=1 / fs), psd=psd, low_frequency_cutoff=spec.snr_f_lower))
            assert per_det[-1] == pytest.approx(row[f"snr_{det}"], rel=0.05)
        assert np.sqrt(np.sum(np.square(per_det))) == pytest.approx(row["snr_target"], rel=0.05)
        assert sim_cfg.priors.snr.low <= row["snr_target"] <= sim_cfg.priors.snr.high


def test_noise_has_the_design_psd(sim_cfg):
    from scipy.signal import welch

    spec = SynthSpec.from_config({**sim_cfg, "signal_fraction": 0.0}, seed=5)
    strain = np.stack([s for s, _, _ in iter_block(spec, range(16))])
    f, p = welch(strain, fs=spec.sample_rate, nperseg=1024, axis=-1)
    p = p.mean(axis=0)
    expected = spec.psd(0, 1024)
    band = (f > 40) & (f < 800)
    ratio = p[0, band] / expected[band]
    assert np.median(ratio) == pytest.approx(1.0, rel=0.1)


def test_layout_written_deterministically(tmp_path, sim_cfg):
    a = synthesise(sim_cfg, n=6, seed=11, out=tmp_path / "a", progress=False)
    b = synthesise(sim_cfg, n=9, seed=11, out=tmp_path / "b", workers=2, block=4, progress=False)
    ids_a, target_a = read_labels(a)
    ids_b, target_b = read_labels(b)
    assert list(ids_b[:6]) == list(ids_a) and list(target_b[:6]) == list(target_a)
    assert 0 < target_b.sum() < len(target_b)
    for sample_id in ids_a:
        np.testing.assert_array_equal(read_sample(sample_path(a, sample_id)), read_sample(sample_path(b, sample_id)))
    with (a / "injections.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == list(ids_a)
    assert all((float(r["snr_network"]) > 0) == (r["target"] == "1") for r in rows)
    c = synthesise(sim_cfg, n=2, seed=12, out=tmp_path / "c", progress=False)
    assert not np.array_equal(read_sample(sample_path(c, read_labels(c)[0][0])),
                              read_sample(sample_path(a, ids_a[0])))
