"""Preprocessing of detector strain for the GW classifiers (numbers in conf/gw/preprocessing/).

`Whitener`: Tukey window, division by the average noise PSD of noise-only training samples (estimated
with scipy's Welch on the same window), zero-phase Butterworth band-pass (default 20-500 Hz) applied
as its gain in the same FFT, resampling to `output_rate` in that FFT (the band ends at 500 Hz, so 1024 Hz
keeps all of it and halves what the CNN reads), and per-detector scaling to unit noise variance. The
matched filter uses the same fitted PSD through `spectrum`, so the CNN and the baseline see identical data.

`CQTFrontEnd`: optional constant-Q transform for 2D models, nnAudio's CQT1992v2 (installs and runs
with torch 2.13).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from nnAudio.features.cqt import CQT1992v2
from scipy import signal

from detsim.errors import ConfigError, DataFileError


class Whitener:
    """Fit on noise-only strain (N, n_det, n_samples), then map any strain to whitened, band-passed,
    unit-variance float32 of the same shape."""

    def __init__(
        self,
        sample_rate: float = 2048.0,
        tukey_alpha: float = 0.2,
        f_low: float = 20.0,
        f_high: float = 500.0,
        filter_order: int = 8,
        per_detector_scale: bool = True,
        chunk: int = 512,
        output_rate: float | None = None,
    ) -> None:
        self.sample_rate = float(sample_rate)
        self.output_rate = float(output_rate or sample_rate)
        if not 2.0 * float(f_high) <= self.output_rate <= self.sample_rate:
            raise ConfigError(f"preprocessing.output_rate must lie in [2 x f_high, sample_rate] = [{2.0 * float(f_high)}, "
                              f"{self.sample_rate}] Hz so the band survives; found {self.output_rate}")
        self.tukey_alpha = float(tukey_alpha)
        self.f_low, self.f_high = float(f_low), float(f_high)
        self.filter_order = int(filter_order)
        self.per_detector_scale = bool(per_detector_scale)
        self.chunk = int(chunk)
        self.psd: np.ndarray | None = None      # (n_det, n_freq) one-sided, 1/Hz
        self.scale: np.ndarray | None = None    # (n_det,) std of whitened noise

    # -- pieces that depend only on the segment length --
    def window(self, n: int) -> np.ndarray:
        return signal.windows.tukey(n, self.tukey_alpha)

    def frequencies(self, n: int) -> np.ndarray:
        return np.fft.rfftfreq(n, 1.0 / self.sample_rate)

    def band_gain(self, n: int) -> np.ndarray:
        """|H(f)| of a Butterworth band-pass: applying it in the Fourier domain is zero-phase."""
        sos = signal.butter(self.filter_order, [self.f_low, self.f_high], btype="bandpass", fs=self.sample_rate, output="sos")
        _, response = signal.sosfreqz(sos, worN=self.frequencies(n), fs=self.sample_rate)
        return np.abs(response)

    def output_length(self, n: int) -> int:
        """Samples of a whitened n-sample segment at `output_rate`."""
        n_out = n * self.output_rate / self.sample_rate
        if abs(n_out - round(n_out)) > 1e-9:
            raise ValueError(f"{n} samples at {self.sample_rate} Hz do not resample to a whole number at {self.output_rate} Hz")
        return int(round(n_out))

    def in_band(self, n: int) -> np.ndarray:
        f = self.frequencies(n)
        return (f >= self.f_low) & (f <= self.f_high)

    # -- fitting --
    def fit(self, noise: np.ndarray) -> "Whitener":
        """Average Welch PSD (one Tukey-windowed segment per sample) of noise-only samples, per detector."""
        if noise.ndim != 3 or len(noise) == 0:
            raise ValueError(f"fit needs noise-only strain (N>0, n_det, n_samples), got shape {noise.shape}")
        n = noise.shape[-1]
        total = np.zeros((noise.shape[1], n // 2 + 1))
        for start in range(0, len(noise), self.chunk):
            block = np.asarray(noise[start : start + self.chunk], dtype=np.float64)
            _, p = signal.welch(block, fs=self.sample_rate, window=("tukey", self.tukey_alpha), nperseg=n,
                                noverlap=0, detrend=False, scaling="density", axis=-1)
            total += p.sum(axis=0)
        self.psd = total / len(noise)
        self.scale = np.ones(noise.shape[1])
        if self.per_detector_scale:
            sample = self(noise[: min(len(noise), 2000)])
            self.scale = sample.std(axis=(0, 2)).astype(np.float64)
        return self

    # -- applying --
    def spectrum(self, strain: np.ndarray) -> np.ndarray:
        """Windowed rfft divided by the expected noise amplitude: noise bins have E|Y|^2 = 1; 0 where PSD = 0."""
        if self.psd is None:
            raise RuntimeError("Whitener.fit must run before use")
        n = strain.shape[-1]
        w = self.window(n)
        norm = np.sqrt(self.psd * self.sample_rate * np.sum(w**2) / 2.0)
        safe = np.where(norm > 0, norm, np.inf)
        return np.fft.rfft(np.asarray(strain, dtype=np.float64) * w, axis=-1) / safe

    def __call__(self, strain: np.ndarray) -> np.ndarray:
        """(N, n_det, n) strain -> (N, n_det, output_length(n)) float32."""
        n = strain.shape[-1]
        n_out = self.output_length(n)
        gain = self.band_gain(n)[: n_out // 2 + 1] * (n_out / n)   # bins above the new Nyquist are out of band
        if n_out < n:
            gain[-1] = 0.0     # the new Nyquist bin would lose its imaginary part; it is out of band anyway
        out = np.empty((*strain.shape[:-1], n_out), dtype=np.float32)
        for start in range(0, len(strain), self.chunk):
            block = self.spectrum(strain[start : start + self.chunk])[..., : n_out // 2 + 1] * gain
            white = np.fft.irfft(block, n=n_out, axis=-1)
            if self.scale is not None:
                white /= self.scale[:, None]
            out[start : start + self.chunk] = white
        return out

    # -- persistence, so evaluation re-uses the training fit --
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, psd=self.psd, scale=self.scale, sample_rate=self.sample_rate, tukey_alpha=self.tukey_alpha,
                 f_low=self.f_low, f_high=self.f_high, filter_order=self.filter_order, output_rate=self.output_rate)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Whitener":
        path = Path(path)
        try:
            data = np.load(path)
            obj = cls(float(data["sample_rate"]), float(data["tukey_alpha"]), float(data["f_low"]),
                      float(data["f_high"]), int(data["filter_order"]),
                      output_rate=float(data["output_rate"]) if "output_rate" in data.files else None)
            obj.psd, obj.scale = data["psd"], data["scale"]
        except (OSError, KeyError, ValueError) as exc:
            raise DataFileError(path, None, "a saved Whitener (.npz with psd, scale, ...)", str(exc)) from None
        return obj


class CQTFrontEnd(torch.nn.Module):
    """(B, n_det, n_samples) strain -> (B, n_det, n_bins, n_frames) constant-Q magnitude images."""

    def __init__(self, sample_rate: float = 2048.0, fmin: float = 20.0, fmax: float = 1024.0,
                 hop_length: int = 32, bins_per_octave: int = 12, log: bool = False) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.cqt = CQT1992v2(sr=int(sample_rate), fmin=fmin, fmax=fmax, hop_length=hop_length,
                                 bins_per_octave=bins_per_octave, output_format="Magnitude", verbose=False)
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        images = self.cqt(x.reshape(b * c, n))
        images = images.reshape(b, c, *images.shape[-2:])
        return torch.log1p(images) if self.log else images
