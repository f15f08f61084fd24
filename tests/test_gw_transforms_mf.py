"""Whitening flattens the noise PSD; the matched filter agrees with pycbc's and finds a loud signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from scipy.signal import welch

from detsim.gw.whiten import CQTFrontEnd, Whitener
from detsim.errors import ConfigError
from detsim.gw.matched_filter import MatchedFilter, whitened_spectra, wrapped_template
from detsim.gw.template_bank import (bank_parameters, best_templates, chirp_mass, fitting_factors, max_mass_ratio,
                                       place_bank, placement_candidates, prior_log_weights, template_matches,
                                       unit_spectra)
from detsim.paths import config_dir
from detsim.gw.synth import SynthSpec, iter_block


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


def test_output_rate_keeps_the_band_and_whiteness(noise_and_signal):
    """Resampling to 1024 Hz inside the whitening FFT: the same series as at 2048 Hz, brick-walled at
    512 Hz, at every second sample; still white and unit variance; a rate that cuts the band is refused."""
    spec, noise, *_ = noise_and_signal
    full = Whitener(per_detector_scale=False).fit(noise[:32])(noise[32:40]).astype(np.float64)
    half = Whitener(per_detector_scale=False, output_rate=1024.0).fit(noise[:32])(noise[32:40])
    assert half.shape == (*full.shape[:-1], full.shape[-1] // 2)
    spectrum = np.fft.rfft(full, axis=-1)
    spectrum[..., full.shape[-1] // 4 :] = 0                         # nothing from 512 Hz up
    brick = np.fft.irfft(spectrum, n=full.shape[-1], axis=-1)[..., ::2]
    np.testing.assert_allclose(half, brick, atol=1e-5 * np.abs(brick).max())
    assert np.sum((full[..., ::2] - brick) ** 2) < 0.02 * np.sum(full**2) / 2   # the cut tail is out of band

    white = Whitener(output_rate=1024.0).fit(noise[:32])(noise[32:])
    np.testing.assert_allclose(white.std(axis=(0, 2)), 1.0, rtol=0.1)
    f, p = welch(white.astype(np.float64), fs=1024.0, nperseg=256, axis=-1)
    band = p.mean(0)[:, (f >= 40) & (f <= 450)]
    assert (band.std(-1) / band.mean(-1) < 0.10).all()
    with pytest.raises(ConfigError, match="output_rate"):
        Whitener(output_rate=800.0)


def test_whitener_round_trips_through_npz(noise_and_signal, tmp_path):
    _, noise, *_ = noise_and_signal
    whitener = Whitener(output_rate=1024.0).fit(noise[:16])
    again = Whitener.load(whitener.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(whitener(noise[16:18]), again(noise[16:18]))


def test_matched_filter_agrees_with_pycbc(noise_and_signal):
    from pycbc.filter import matched_filter
    from pycbc.types import FrequencySeries, TimeSeries

    spec, noise, strain, _, row = noise_and_signal
    whitener = Whitener(tukey_alpha=0.0)
    whitener.psd = np.stack([spec.psd(j, spec.n_samples) for j in range(3)])
    mf = MatchedFilter(whitener, spec.approximant, spec.f_lower, (0.0, 2.0), coincidence=0.0, lag_rate=2048.0)
    from detsim.gw.matched_filter import _snr_squared

    wave = wrapped_template(row, spec.n_samples, spec.approximant, spec.sample_rate, spec.f_lower)
    y = mf._data(strain[None])
    ours = _snr_squared(y, mf._spectra(wave[None], spec.n_samples), spec.n_samples)[0, 0].sqrt().numpy()
    template = TimeSeries(wave, delta_t=1 / spec.sample_rate)
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
    spectra = unit_spectra(mf.template_spectra([row, {**row, "mass1": 30.0, "mass2": 25.0}], data.shape[-1]))
    best, marginal = mf.bank_statistics(data, spectra)
    np.testing.assert_allclose(best, bank, rtol=1e-6)
    # ln mean_k exp(rho_k^2 / 2) lies between its largest term / K and that term
    assert np.all(marginal <= best**2 / 2 + 1e-2) and np.all(marginal >= best**2 / 2 - np.log(2) - 1e-2)  # float32 SNRs
    assert marginal[0] > marginal[1:].max() + 100                  # 20^2 / 2 vs ~6^2 / 2


@pytest.fixture(scope="module")
def matched_filter(noise_and_signal):
    spec, noise, *_ = noise_and_signal
    return MatchedFilter(Whitener().fit(noise[:32]), spec.approximant, spec.f_lower, (1.0, 1.8)), spec


def test_template_match_is_one_for_a_shifted_copy_and_falls_with_chirp_mass(matched_filter):
    mf, spec = matched_filter
    n = 4096
    base = {"mass1": 30.0, "mass2": 25.0, "spin1z": 0.0, "spin2z": 0.0}
    wave = wrapped_template(base, n, spec.approximant, spec.sample_rate, spec.f_lower)
    near, far = {**base, "mass1": 31.0}, {**base, "mass1": 15.0, "mass2": 12.0}
    spectra = unit_spectra(np.concatenate([mf.template_spectra([base, near, far], n),
                                           whitened_spectra(np.roll(wave, 150)[None], mf.whitener)[..., : mf._band(n)]]))
    match = template_matches(spectra, spectra, n_lags=4096).numpy()
    np.testing.assert_allclose(np.diag(match), 1.0, atol=1e-4)
    np.testing.assert_allclose(match, match.T, atol=1e-4)
    assert match[0, 3] > 0.995                      # 73 ms later, same template: time maximisation finds it
    assert 0.9 < match[0, 1] < 0.999                # 1 Msun heavier: close but not equal
    assert match[0, 2] < 0.6                        # half the chirp mass: another signal
    assert chirp_mass(30.0, 30.0) == pytest.approx(30.0 * 2 ** -0.2)


def test_stochastic_bank_covers_its_prior_to_the_minimal_match(matched_filter):
    """Placement keeps templates apart (no two match to minimal_match) and covers the prior: fresh prior draws are
    matched to >= minimal_match by some template; a looser minimal match needs fewer templates."""
    from detsim.gw.priors import draw_parameters

    mf, spec = matched_filter
    n, n_lags = 4096, 4096
    priors = {**spec.priors, "mass1": {"dist": "uniform", "low": 25.0, "high": 35.0},
              "mass2": {"dist": "uniform", "low": 25.0, "high": 35.0}}
    cfg = {"placement": "stochastic", "minimal_match": 0.95, "n_candidates": 400, "seed": 3, "chirp_window": 0.15}
    bank, spectra = place_bank(cfg, priors, lambda p: mf.template_spectra(p, n), n_lags)
    assert len(bank) == len(spectra) > 3
    chirp = np.array([chirp_mass(p["mass1"], p["mass2"]) for p in bank])
    assert chirp.min() >= chirp_mass(25.0, 25.0) - 1e-6 and chirp.max() <= chirp_mass(35.0, 35.0) + 1e-6
    pairs = template_matches(spectra, spectra, n_lags).numpy()
    assert (pairs[~np.eye(len(bank), dtype=bool)] < 0.95).all()
    rng = np.random.default_rng(11)
    signals = unit_spectra(mf.template_spectra([draw_parameters(priors, rng) for _ in range(60)], n))
    factors, nearest = best_templates(signals, spectra, n_lags)
    assert np.mean(factors >= 0.95) >= 0.9 and factors.min() > 0.9
    np.testing.assert_allclose(fitting_factors(signals, spectra, n_lags), factors)
    own, index = best_templates(spectra, spectra, n_lags)              # each template is its own best match
    np.testing.assert_allclose(own, 1.0, atol=1e-4)
    np.testing.assert_array_equal(index, np.arange(len(bank)))
    weights = np.exp(prior_log_weights(nearest, len(bank)))
    np.testing.assert_allclose(weights.sum(), 1.0)
    np.testing.assert_allclose(weights, (np.bincount(nearest, minlength=len(bank)) + 1) / (60 + len(bank)))
    looser, _ = place_bank({**cfg, "minimal_match": 0.85}, priors, lambda p: mf.template_spectra(p, n), n_lags)
    assert len(looser) < len(bank)
    grid, _ = place_bank({"placement": "grid", "n_chirp_mass": 3, "n_mass_ratio": 2, "n_spin": 1, "spin_max": 0.0},
                         priors, lambda p: mf.template_spectra(p, n), n_lags)
    assert len(grid) == len(bank_parameters({"n_chirp_mass": 3, "n_mass_ratio": 2, "n_spin": 1, "spin_max": 0.0}, priors))
    with pytest.raises(ConfigError, match="placement 'lattice' is unknown"):
        place_bank({"placement": "lattice"}, priors, lambda p: mf.template_spectra(p, n), n_lags)


def test_cqt_front_end_shape():
    images = CQTFrontEnd(fmin=20.0, fmax=500.0, hop_length=32, bins_per_octave=12)(torch.randn(2, 3, 4096))
    assert images.shape[:2] == (2, 3) and images.shape[-1] == 4096 // 32 + 1 and (images >= 0).all()


def test_placement_candidates_reach_the_low_chirp_mass_corner():
    """Candidates stay in the prior's mass box and spread evenly in ln(chirp mass), down to the corner of near-equal
    low masses where the box allows few mass ratios but templates are densest."""
    priors = {"mass1": {"dist": "uniform", "low": 10.0, "high": 50.0}, "mass2": {"dist": "uniform", "low": 10.0, "high": 50.0},
              "spin1z": {"dist": "uniform", "low": -0.5, "high": 0.5}, "spin2z": {"dist": "uniform", "low": -0.5, "high": 0.5}}
    candidates = placement_candidates(priors, 4000, seed=2)
    m1, m2 = (np.array([c[k] for c in candidates]) for k in ("mass1", "mass2"))
    assert (m1 >= m2).all() and m2.min() >= 10.0 - 1e-9 and m1.max() <= 50.0 + 1e-9
    counts, _ = np.histogram(np.log(chirp_mass(m1, m2)), bins=8, range=np.log([chirp_mass(10.0, 10.0), chirp_mass(50.0, 50.0)]))
    assert counts.min() > 0.8 * len(candidates) / 8
    assert max_mass_ratio(chirp_mass(10.0, 10.0) * 1.01, 10.0, 50.0) < 1.1
    assert max_mass_ratio(chirp_mass(20.0, 10.0), 10.0, 50.0) == pytest.approx(2.0)       # m2 reaches the lower edge
    assert max_mass_ratio(chirp_mass(50.0, 25.0), 10.0, 50.0) == pytest.approx(2.0)       # m1 reaches the upper edge
