"""Detector noise: analytic design PSDs from pycbc, Gaussian noise coloured in the frequency domain,
and the optimal SNR of a signal against a PSD.

Noise is made with numpy (an inverse real FFT of complex Gaussians scaled by the PSD) because that is
what pycbc's noise_from_psd does at a fraction of the cost per 2 s sample; the convention is the
one-sided PSD S(f) with variance = integral S df, the same as pycbc's `sigma`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from detsim import extras
from detsim.errors import ConfigError


@lru_cache(maxsize=32)
def analytic_psd(name: str, n_samples: int, sample_rate: float, f_low: float) -> np.ndarray:
    """One-sided PSD (1/Hz) of pycbc's analytic model `name` on the rfft grid of n_samples, 0 below f_low."""
    psds = extras.pycbc().psd
    if name not in psds.get_psd_model_list():
        raise ConfigError(f"unknown analytic PSD {name!r}; e.g. aLIGOZeroDetHighPower, AdVDesignSensitivityP1200087")
    delta_f = sample_rate / n_samples
    psd = psds.from_string(name, n_samples // 2 + 1, delta_f, f_low).numpy().astype(np.float64)
    psd.setflags(write=False)
    return psd


def coloured_noise(psd: np.ndarray, n_samples: int, sample_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary Gaussian noise with one-sided PSD `psd` (given on the rfft grid of n_samples)."""
    scale = np.sqrt(psd * n_samples * sample_rate / 4.0)
    spectrum = (rng.standard_normal(len(psd)) + 1j * rng.standard_normal(len(psd))) * scale
    spectrum[0] = 0.0
    spectrum[-1] = spectrum[-1].real
    return np.fft.irfft(spectrum, n=n_samples)


def optimal_snr(strain: np.ndarray, psd: np.ndarray, sample_rate: float, f_low: float, f_high: float | None = None) -> np.ndarray:
    """sqrt(4 df sum |h(f)|^2 / S(f)) over [f_low, f_high) along the last axis (pycbc's `sigma`)."""
    n = strain.shape[-1]
    delta_f = sample_rate / n
    freqs = np.arange(n // 2 + 1) * delta_f
    band = (freqs >= f_low) & (freqs < (f_high or sample_rate / 2)) & (psd > 0)
    h_f = np.fft.rfft(strain, axis=-1)[..., band] / sample_rate
    return np.sqrt(4.0 * delta_f * np.sum(np.abs(h_f) ** 2 / psd[band], axis=-1))
