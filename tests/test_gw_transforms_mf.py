"""Whitening flattens the noise PSD; the matched filter agrees with pycbc's and finds a loud signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from scipy.signal import welch

from detsim.data.gw_transforms import CQTFrontEnd, Whitener
from detsim.eval.matched_filter import MatchedFilter, wrapped_template
from detsim.paths import config_dir
from detsim.sim.gw.synth import SynthSpec, iter_block


@pytest.fixture(scope="module")
def noise_and_signal():
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        sim = compose("simulate", overrides=["simulator=gw"]).simulator
    noise_spec = SynthSpec.from_config({**sim, "signal_fraction": 0.0}, seed=21)
    noise = np.stack([s for s, _, _ in iter_block(noise_spec, range(48))])
    loud = SynthSpec.from_config({**sim, "signal_fraction": 1.0,
                                  "priors": {**sim.priors, "snr": {"dist": "fixed", "value": 20.0}}}, seed=22)
    strain, signal, row = next(iter_block(loud, [0]))
    return noise_spec, noise, strain, signal, row


def test_whitening_flattens_noise_psd(noise_and_signal):
    spec, noise, *_ = noise_and_signal
    whitener = Whitener(f_low=20.0, f_high=500.0).fit(noise[:32])
    white = whitener(noise[32:])
    assert white.dtype == np.float32
    np.testing.assert_allclose(white.std(axis=(0, 2)), 1.0, rtol=0.1)
    f, p_raw = welch(noise[32:], fs=spec.sample_rate, nperseg=512, axis=-1)
    _, p_white = welch(white.astype(np.float64), fs=spec.sample_rate, nperseg=512, axis=-1)
    wide, band = (f >= 25) & (f <= 450), (f >= 40) & (f <= 450)   # away from the band-pass edges
    raw_spread = p_raw.mean(0)[:, wide].max(-1) / p_raw.mean(0)[:, wide].min(-1)
    white = p_white.mean(0)[:, band]
    # 16 samples x 15 Welch segments: each bin scatters by ~1/sqrt(240) = 6.5% around a flat PSD
    assert (raw_spread > 5).all()                                        # coloured across the band
    assert (white.std(-1) / white.mean(-1) < 0.10).all()                 # whitened: flat to sampling noise
    lo, hi = white[:, : white.shape[1] // 2].mean(-1), white[:, white.shape[1] // 2 :].mean(-1)
    np.testing.assert_allclose(lo / hi, 1.0, atol=0.05)                  # no residual tilt
    assert (p_white.mean(0)[:, f > 600].mean(-1) < 0.01 * p_white.mean(0)[:, band].mean(-1)).all()  # band-passed


def test_whitener_round_trips_through_npz(noise_and_signal, tmp_path):
    _, noise, *_ = noise_and_signal
    whitener = Whitener().fit(noise[:16])
    again = Whitener.load(whitener.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(whitener(noise[16:18]), again(noise[16:18]))


def test_matched_filter_agrees_with_pycbc(noise_and_signal):
    from pycbc.filter import matched_filter
    from pycbc.types import FrequencySeries, TimeSeries

    spec, noise, strain, _, row = noise_and_signal
    whitener = Whitener(tukey_alpha=0.0)
    whitener.psd = np.stack([spec.psd(j, spec.n_samples) for j in range(3)])
    mf = MatchedFilter(whitener, spec.approximant, spec.f_lower, (0.0, 2.0), coincidence=0.0, lag_rate=2048.0)
    from detsim.eval.matched_filter import _snr_squared

    params = [row]
    y = mf._data(strain[None])
    ours = _snr_squared(y, mf._templates(params, spec.n_samples), spec.n_samples)[0, 0].sqrt().numpy()
    template = TimeSeries(wrapped_template(row, spec.n_samples, spec.approximant, spec.sample_rate, spec.f_lower),
                          delta_t=1 / spec.sample_rate)
    psd = FrequencySeries(whitener.psd[0], delta_f=spec.sample_rate / spec.n_samples)
    theirs = abs(matched_filter(template, TimeSeries(strain[0], delta_t=1 / spec.sample_rate), psd=psd,
                                low_frequency_cutoff=20.0, high_frequency_cutoff=500.0)).numpy()
    assert ours.max() == pytest.approx(theirs.max(), rel=0.02)
    assert abs(int(ours.argmax()) - int(theirs.argmax())) <= 1


def test_matched_filter_scores_loud_injection_far_above_noise(noise_and_signal):
    spec, noise, strain, _, row = noise_and_signal
    whitener = Whitener().fit(noise[:32])
    mf = MatchedFilter(whitener, spec.approximant, spec.f_lower, (1.0, 1.8))
    data = np.concatenate([strain[None], noise[32:]])
    true = mf.true_scores(data, [row] * len(data))
    bank = mf.bank_scores(data, [row, {**row, "mass1": 30.0, "mass2": 25.0}])
    for scores in (true, bank):
        assert scores[0] > 15 and scores[0] > scores[1:].max() + 6   # SNR 20 vs noise maxima ~6
    assert row["t_merger"] * spec.sample_rate > 0


def test_cqt_front_end_shape():
    images = CQTFrontEnd(fmin=20.0, fmax=500.0, hop_length=32, bins_per_octave=12)(torch.randn(2, 3, 4096))
    assert images.shape[:2] == (2, 3) and images.shape[-1] == 4096 // 32 + 1 and (images >= 0).all()
