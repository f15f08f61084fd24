"""The template-bank search over continuous strain: the matched filter over a bank, network SNR per time bin,
slid against the other detectors (split from `detsim.gw.search`, whose blocks, whitening PSD and driver it uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from detsim.errors import ConfigError
from detsim.gw.matched_filter import _plus, _snr_squared, whitened_spectra, wrap_at_merger
from detsim.gw.search import Block, BlockResult, cluster_block_peaks, psd_on_grid, samples, welch_psd
from detsim.gw.strain import StrainReader
from detsim.gw.template_bank import unit_spectra
from detsim.gw.whiten import Whitener


@dataclass
class BankSearch:
    """The matched filter over a template bank (intrinsic parameters: mass1, mass2, spin1z, spin2z)."""

    bank: Sequence[Mapping[str, float]] | None = None
    approximant: str = "IMRPhenomD"
    f_lower: float = 20.0
    f_low: float = 20.0
    f_high: float = 500.0
    chunk_duration: float = 256.0
    pad: float = 16.0
    taper: float = 1.0
    lag_rate: float = 1024.0
    bin_lags: int = 8
    coincidence: float = 0.03
    psd_segment: float = 4.0
    template_batch: int = 16
    var: float = 0.1
    place: Callable[[np.ndarray, float], list[dict[str, float]]] | None = None   # (PSD, rate) -> bank, when `bank` is None

    method = "bank"

    def quantum(self, rate: float) -> int:
        return samples(self.bin_lags / self.lag_rate, rate, "bank.bin_lags / bank.lag_rate")

    def separation(self) -> float:
        return self.coincidence + self.bin_lags / self.lag_rate

    def attrs(self) -> dict[str, Any]:
        return {"approximant": self.approximant, "n_templates": len(self.bank or ()), "coincidence": self.coincidence,
                "bin": self.bin_lags / self.lag_rate, "chunk_duration": self.chunk_duration, "pad": self.pad}

    def _whitener(self, psd: np.ndarray, fs: float, n: int) -> Whitener:
        w = Whitener(sample_rate=fs, tukey_alpha=min(2 * self.taper / (n / fs), 1.0), f_low=self.f_low,
                     f_high=self.f_high, per_detector_scale=False)
        w.psd = psd_on_grid(psd, fs, n)
        return w

    def prepare(self, first_block: Block, reader: StrainReader, detectors: Sequence[str], device: torch.device) -> None:
        """Place the bank (with the first block's PSD) unless it is given; check every template fits in the pad."""
        fs = first_block.segment.sample_rate
        if self.lag_rate < 2 * self.f_high:
            raise ConfigError(f"bank.lag_rate: expected at least 2 x f_high = {2 * self.f_high} Hz, found {self.lag_rate}")
        if self.bank is None:
            if self.place is None:
                raise ConfigError("bank: no bank_file given and no placement configured")
            data = np.stack([reader.read(first_block.segment, d, first_block.start, first_block.stop) for d in detectors])
            psd = welch_psd(data, fs, samples(self.psd_segment, fs, "bank.psd_segment"), 0.2)
            self.bank = self.place(psd, fs)
        if not self.bank:
            raise ConfigError("bank: the template bank is empty")
        longest = max(self._inspiral(p, fs) for p in self.bank)
        if longest > self.pad - self.taper:
            raise ConfigError(f"bank.pad: the longest template lasts {longest:.1f} s from f_lower={self.f_lower} Hz; "
                              f"expected pad >= that + taper ({self.taper} s), found {self.pad}")

    def _inspiral(self, params: Mapping[str, float], fs: float) -> float:
        """Seconds before the merger from which the template's amplitude exceeds 1e-3 of its peak (pycbc starts the
        time-domain waveform below f_lower to taper it in)."""
        pol = self._waveform(params, fs)
        loud = np.flatnonzero(np.abs(pol.plus) > 1e-3 * np.abs(pol.plus).max())
        return (pol.merger_index - loud[0]) / fs if len(loud) else 0.0

    def _waveform(self, p: Mapping[str, float], fs: float):
        return _plus(float(p["mass1"]), float(p["mass2"]), float(p.get("spin1z", 0.0)), float(p.get("spin2z", 0.0)),
                     self.approximant, float(fs), self.f_lower)

    def bank_columns(self) -> dict[str, np.ndarray]:
        return {k: np.array([float(p.get(k, 0.0)) for p in self.bank or ()]) for k in ("mass1", "mass2", "spin1z", "spin2z")}

    def run_block(self, block: Block, reader: StrainReader, detectors: Sequence[str], shifts: np.ndarray,
                  cluster_window: float, device: torch.device) -> BlockResult:
        seg, fs = block.segment, block.segment.sample_rate
        n = samples(self.chunk_duration, fs, "bank.chunk_duration")
        pad = samples(self.pad, fs, "bank.pad")
        q = self.quantum(fs)                             # samples per bin
        if n > seg.n_samples:
            raise ConfigError(f"bank.chunk_duration: {self.chunk_duration} s is longer than segment {seg.key} of "
                              f"{seg.path} ({seg.duration:g} s)")
        core = ((n - 2 * pad) // q) * q
        if core <= 0:
            raise ConfigError(f"bank.chunk_duration: expected more than 2 x pad ({2 * self.pad} s), found {self.chunk_duration}")
        n_lags = int(round(self.chunk_duration * self.lag_rate))
        lag_per_sample = self.lag_rate / fs
        coinc = int(round(self.coincidence * self.lag_rate))
        margin = int(math.ceil(cluster_window / 2 / (q / fs)))
        n_bins = block.length // q
        grid = np.arange(-margin, n_bins + margin)                        # bin i: samples start + i q ...
        owned = (grid >= 0) & (grid < n_bins)
        block_data = np.stack([reader.read(seg, d, block.start, block.stop) for d in detectors])
        psd = welch_psd(block_data, fs, samples(self.psd_segment, fs, "bank.psd_segment"), 0.2)
        del block_data
        whitener = self._whitener(psd, fs, n)
        band = int(np.flatnonzero(whitener.in_band(n))[-1]) + 1
        mask = whitener.in_band(n)[:band]
        chunks = []                                                       # (first bin, last bin, lag offset, data)
        first = max(block.start - margin * q, 0)
        last = min(block.stop + margin * q, seg.n_samples)
        latest = block.start + ((seg.n_samples - n - block.start) // q) * q   # last chunk start on the bin grid
        for c0 in range(block.start + ((first - block.start) // q) * q, last, core):
            c1 = min(c0 + core, last)
            d0 = min(block.start + ((c0 - pad - block.start) // q) * q, latest)
            if d0 < 0:
                d0 = block.start % q
            v0, v1 = max(c0, d0 + pad), min(c1, d0 + n - pad)
            b0, b1 = -((block.start - v0) // q), (v1 - block.start) // q
            if b1 <= b0:
                continue
            strain = np.stack([reader.read(seg, d, d0, d0 + n) for d in detectors])
            y = whitener.spectrum(strain)[..., :band] * mask
            chunks.append((b0, b1, int(round((block.start + b0 * q - d0) * lag_per_sample)),
                           torch.as_tensor(y, dtype=torch.complex64, device=device)))
        n_slides = len(shifts)
        best = torch.full((n_slides, len(grid)), -torch.inf, device=device)
        best_id = torch.zeros((n_slides, len(grid)), dtype=torch.int32, device=device)
        bin_lags = int(round(q * lag_per_sample))
        for t0 in range(0, len(self.bank), self.template_batch):
            params = self.bank[t0 : t0 + self.template_batch]
            waves = np.stack([wrap_at_merger(w.plus, w.merger_index, n, fs) for w in (self._waveform(p, fs) for p in params)])
            spectra = unit_spectra(whitened_spectra(waves, whitener)[..., :band]).to(device)
            pooled = torch.full((len(params), len(detectors), len(grid)), -torch.inf, device=device)
            for b0, b1, lag0, y in chunks:
                snr2 = _snr_squared(y[None], spectra, n_lags)                                  # (K, D, n_lags)
                snr2 = torch.nn.functional.max_pool1d(snr2.reshape(-1, 1, n_lags), 2 * coinc + 1, 1, coinc).reshape(snr2.shape)
                binned = snr2[..., lag0 : lag0 + (b1 - b0) * bin_lags].reshape(*snr2.shape[:2], b1 - b0, bin_lags).amax(-1)
                pooled[..., b0 + margin : b1 + margin] = binned
            for k in range(n_slides):
                net = pooled[:, 0].clone()                                                        # (K, bins)
                for j in range(1, len(detectors)):
                    net += self._slid(pooled[:, j], int(shifts[k][j]) // q, margin)
                top = net.max(0)
                better = top.values > best[k]
                best[k] = torch.where(better, top.values, best[k])
                best_id[k] = torch.where(better, (top.indices + t0).to(torch.int32), best_id[k])
        best_np, ids = best.cpu().numpy().astype(np.float64), best_id.cpu().numpy()
        half = int(round(cluster_window / 2 / (q / fs)))
        out_rows, livetime, span = [], np.zeros(n_slides), None
        for k in range(n_slides):
            stat = np.where(np.isfinite(best_np[k]), np.sqrt(np.clip(best_np[k], 0, None)), -np.inf)
            keep = cluster_block_peaks(stat, owned, half)
            ok = np.isfinite(stat) & owned
            livetime[k] = np.count_nonzero(ok) * q / fs
            out_rows.append({"time": block.time(block.start + (grid[keep] + 0.5) * q), "stat": stat[keep],
                             "var": np.full(len(keep), self.var), "timeslide_id": np.full(len(keep), k),
                             "template_id": ids[k][keep]})
            if k == 0 and ok.any():
                covered = grid[ok]
                span = (float(block.time(block.start + covered[0] * q)), float(block.time(block.start + (covered[-1] + 1) * q)))
        return BlockResult({key: np.concatenate([r[key] for r in out_rows]) for key in out_rows[0]}, livetime, span)

    @staticmethod
    def _slid(series: torch.Tensor, shift: int, margin: int) -> torch.Tensor:
        """A detector's binned series (..., margin + n_bins + margin) read `shift` bins later, wrapped round inside the
        block's own bins (the margins too: they are the neighbouring bins of the wrapped series); zero lag as it is."""
        if shift == 0:
            return series
        own = series[..., margin : series.shape[-1] - margin].roll(-shift, -1)
        return torch.cat([own[..., own.shape[-1] - margin :], own, own[..., :margin]], -1) if margin else own
