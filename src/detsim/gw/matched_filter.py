"""Matched-filter baselines for the GW classifiers, on the same whitened test data the CNN sees.

Templates are pycbc waveforms (plus polarisation, merger at sample 0, inspiral wrapped to the end) in
the Whitener's normalised frequency domain. For each detector the complex SNR time series
z(t) = sum_f Y(f) T*(f) e^{2 pi i f t} / sqrt(sum |T|^2 / 2) has |z|^2 ~ chi^2_2 in noise (phase maximised).
The network statistic is max over merger times in the prior window of sum_det max_{|dt| <= coincidence}
|z_det|^2, then max over (or marginalised over) the templates of a bank (`template_bank` places it); `true` uses
each sample's own intrinsic parameters (noise-only samples use the parameters the simulator drew for them), the
bound a search that knows the source could reach. Scoring runs in torch, batched, on CPU or GPU.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from rich.progress import track
from scipy.special import logsumexp

from detsim.gw.io import read_side_column
from detsim.gw.whiten import Whitener
from detsim.gw.template_bank import place_bank, unit_spectra
from detsim.gw.waveform import polarisations


@lru_cache(maxsize=4096)
def _plus(mass1: float, mass2: float, spin1z: float, spin2z: float, approximant: str, sample_rate: float, f_lower: float):
    params = dict(mass1=mass1, mass2=mass2, spin1z=spin1z, spin2z=spin2z, distance=1.0, inclination=0.0, coa_phase=0.0)
    return polarisations(params, approximant, sample_rate, f_lower)


def wrap_at_merger(plus: np.ndarray, merger_index: int, n: int, sample_rate: float, ringdown: float = 0.25) -> np.ndarray:
    """h+ with the merger at sample 0, the ringdown after it and the last n - ringdown samples of
    inspiral wrapped to the end: correlating it with data peaks at the merger sample."""
    after = int(ringdown * sample_rate)
    out = np.zeros(n)
    tail = plus[merger_index : merger_index + after]
    out[: len(tail)] = tail
    before = plus[max(merger_index - (n - after), 0) : merger_index]
    if len(before):
        out[n - len(before) :] = before
    return out


def wrapped_template(params: Mapping[str, float], n: int, approximant: str, sample_rate: float, f_lower: float,
                     ringdown: float = 0.25) -> np.ndarray:
    """`wrap_at_merger` of the pycbc h+ (face-on, zero phase) of the intrinsic parameters in `params`."""
    pol = _plus(float(params["mass1"]), float(params["mass2"]), float(params["spin1z"]), float(params["spin2z"]),
                approximant, float(sample_rate), float(f_lower))
    return wrap_at_merger(pol.plus, pol.merger_index, n, sample_rate, ringdown)


def whitened_spectra(waves: np.ndarray, whitener: Whitener) -> np.ndarray:
    """(K, n_det, n_freq) normalised spectra of wrapped templates (K, n), in band, in `whitener.spectrum`'s units."""
    n = waves.shape[-1]
    w = whitener.window(n)
    norm = np.sqrt(whitener.psd * whitener.sample_rate * np.sum(w**2) / 2.0)           # (n_det, F)
    spectra = np.fft.rfft(waves, axis=-1)[:, None, :] / np.where(norm > 0, norm, np.inf)[None]
    return spectra * whitener.in_band(n)


def _snr_squared(y: torch.Tensor, t: torch.Tensor, n_lags: int) -> torch.Tensor:
    """|z|^2 at n_lags lags spanning the segment: y (..., F), t (..., F) broadcastable -> (..., n_lags).
    Only in-band bins are non-zero, so the one-sided product fits a complex FFT of n_lags >= F bins,
    which samples z at n_lags / duration (the envelope |z| varies slowly; 1024 Hz is plenty)."""
    sigma2 = (t.abs() ** 2).sum(-1, keepdim=True) / 2
    prod = y * t.conj()
    z = torch.fft.ifft(prod, n=n_lags, dim=-1) * n_lags
    return (z.abs() ** 2) / sigma2.clamp_min(1e-30)


def _network(snr2: torch.Tensor, coincidence: int, lo: int, hi: int) -> torch.Tensor:
    """(..., n_det, n) -> (...): max over lags in [lo, hi) of sum_det of |z|^2 max-pooled over +-coincidence."""
    window = snr2[..., max(lo - coincidence, 0) : hi + coincidence]
    shape = window.shape
    pooled = torch.nn.functional.max_pool1d(window.reshape(-1, 1, shape[-1]), 2 * coincidence + 1, 1, coincidence)
    offset = lo - max(lo - coincidence, 0)
    return pooled.reshape(shape).sum(-2)[..., offset : offset + hi - lo].amax(-1)


def marginalised(snr2: np.ndarray, log_weights: np.ndarray | None = None) -> np.ndarray:
    """ln sum_k w_k exp(SNR_k^2 / 2) over a bank's templates (uniform weights by default): the likelihood ratio of
    a signal marginalised over the bank (phase and time maximised), the statistic the Neyman-Pearson lemma favours
    when the weights are the templates' prior masses (`template_bank.prior_log_weights`)."""
    if log_weights is None:
        log_weights = np.full(snr2.shape[-1], -np.log(snr2.shape[-1]))
    return logsumexp(snr2.astype(np.float64) / 2 + log_weights, axis=-1)


class MatchedFilter:
    """Scores strain with the bank or the true templates; higher = more signal-like (network SNR)."""

    def __init__(self, whitener: Whitener, approximant: str, f_lower: float, merger_window: Sequence[float],
                 coincidence: float = 0.03, lag_rate: float = 1024.0, device: str = "cpu", batch: int = 64,
                 template_batch: int = 16) -> None:
        self.whitener = whitener
        self.lag_rate = float(lag_rate)
        self.approximant, self.f_lower = approximant, float(f_lower)
        self.merger_window = (float(merger_window[0]), float(merger_window[1]))
        self.coincidence = int(round(coincidence * self.lag_rate))
        self.device, self.batch, self.template_batch = torch.device(device), int(batch), int(template_batch)

    def _lags(self, n: int) -> tuple[int, int, int]:
        """Number of lags and the lag range [lo, hi) of the merger window (+- coincidence)."""
        duration = n / self.whitener.sample_rate
        n_lags = int(round(duration * self.lag_rate))
        band = int(np.flatnonzero(self.whitener.in_band(n))[-1]) + 1
        if n_lags < band:
            raise ValueError(f"lag_rate {self.lag_rate} Hz is below the band's upper edge x 2")
        return (n_lags, max(int(self.merger_window[0] * self.lag_rate) - self.coincidence, 0),
                min(int(self.merger_window[1] * self.lag_rate) + self.coincidence + 1, n_lags))

    def _band(self, n: int) -> int:
        return int(np.flatnonzero(self.whitener.in_band(n))[-1]) + 1

    def _data(self, strain: np.ndarray) -> torch.Tensor:
        n = strain.shape[-1]
        y = (self.whitener.spectrum(strain) * self.whitener.in_band(n))[..., : self._band(n)]
        return torch.as_tensor(y, dtype=torch.complex64, device=self.device)

    def _spectra(self, waves: np.ndarray, n: int) -> torch.Tensor:
        """Whitened, in-band spectra of wrapped templates (K, n), scaled to unit norm (the statistic ignores
        the template's scale, and unit norm keeps |T|^2 sums inside complex64's range)."""
        return unit_spectra(whitened_spectra(np.asarray(waves, dtype=np.float64), self.whitener)[..., : self._band(n)]).to(self.device)

    def template_spectra(self, params: Sequence[Mapping[str, float]], n: int) -> np.ndarray:
        """(K, n_det, F) whitened, in-band spectra of the pycbc templates of intrinsic parameters `params`, for
        n-sample strain: what `template_bank` places and matches."""
        waves = np.stack([wrapped_template(p, n, self.approximant, self.whitener.sample_rate, self.f_lower) for p in params])
        return whitened_spectra(waves, self.whitener)[..., : self._band(n)]

    def bank_scores(self, strain: np.ndarray, bank: Sequence[Mapping[str, float]], progress: bool = False) -> np.ndarray:
        """Max over the pycbc templates of `bank` (intrinsic parameters) of the network statistic."""
        n = strain.shape[-1]
        return self.bank_statistics(strain, unit_spectra(self.template_spectra(bank, n)), progress)[0]

    def wave_bank_scores(self, strain: np.ndarray, waves: np.ndarray, progress: bool = False) -> np.ndarray:
        """Max over a bank given as wrapped templates (K, n) (`wrap_at_merger`), so pycbc-free callers can score it."""
        return self.bank_statistics(strain, self._spectra(waves, strain.shape[-1]), progress)[0]

    def network_snr2(self, strain: np.ndarray, spectra: torch.Tensor, progress: bool = False) -> np.ndarray:
        """(N, K) network statistic (SNR^2) of every sample with every template of a bank given as unit, in-band
        spectra (K, n_det, F) (`template_bank.unit_spectra`)."""
        n = strain.shape[-1]
        n_lags, lo, hi = self._lags(n)
        spectra = spectra.to(self.device)
        out = np.empty((len(strain), len(spectra)), dtype=np.float32)
        starts = range(0, len(strain), self.batch)
        for start in track(starts, description=f"matched filter (bank of {len(spectra)})", disable=not progress):
            y = self._data(strain[start : start + self.batch])[:, None]                  # (B, 1, D, F)
            stats = torch.cat([_network(_snr_squared(y, spectra[None, k : k + self.template_batch], n_lags),
                                        self.coincidence, lo, hi) for k in range(0, len(spectra), self.template_batch)], -1)
            out[start : start + len(stats)] = stats.cpu().numpy()
        return out

    def bank_statistics(self, strain: np.ndarray, spectra: torch.Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Two searches over a bank (`network_snr2`): the max over templates of the network SNR (the usual search)
        and `marginalised` with uniform weights, the likelihood ratio averaged over the bank."""
        snr2 = self.network_snr2(strain, spectra, progress)
        return np.sqrt(snr2.max(-1)), marginalised(snr2)

    def true_scores(self, strain: np.ndarray, params: Sequence[Mapping[str, float]], progress: bool = False) -> np.ndarray:
        n = strain.shape[-1]
        return self.own_template_scores(
            strain, lambda sl: np.stack([wrapped_template(p, n, self.approximant, self.whitener.sample_rate, self.f_lower)
                                         for p in params[sl]]), progress)

    def own_template_scores(self, strain: np.ndarray, waves: Callable[[slice], np.ndarray] | np.ndarray,
                            progress: bool = False) -> np.ndarray:
        """Each sample filtered with its own wrapped template (`wrap_at_merger`): `waves` is an (N, n) array
        or a function giving the templates of a slice of samples (so pycbc-free callers can supply them)."""
        n = strain.shape[-1]
        n_lags, lo, hi = self._lags(n)
        scores = np.empty(len(strain))
        starts = range(0, len(strain), self.batch)
        for start in track(starts, description="matched filter (true templates)", disable=not progress):
            sl = slice(start, min(start + self.batch, len(strain)))
            t = self._spectra(waves(sl) if callable(waves) else waves[sl], n)
            snr2 = _snr_squared(self._data(strain[sl]), t, n_lags)
            scores[sl] = _network(snr2, self.coincidence, lo, hi).sqrt().cpu().numpy()
        return scores


def baseline_scores(raw: Mapping[str, Any], side_csv: str, whitener: Whitener, sim: Mapping[str, Any],
                    bank_cfg: Mapping[str, Any], device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    """Matched-filter statistics of a datamodule split (`G2NetDataModule.raw`): true templates (`mf_true`), and the
    search over the bank `bank_cfg` places (conf/gw/bank), as its max (`mf_bank<K>`) and marginalised over it
    (`mf_bank<K>_marginal`)."""
    ids = raw["ids"]
    keys = ("mass1", "mass2", "spin1z", "spin2z")
    columns = {k: read_side_column(side_csv, ids, k) for k in keys}
    params = [{k: float(columns[k][i]) for k in keys} for i in range(len(ids))]
    t_merger = sim["priors"]["t_merger"]
    mf = MatchedFilter(whitener, str(sim["approximant"]), float(sim["f_lower"]),
                       (float(t_merger["low"]), float(t_merger["high"])), float(bank_cfg["coincidence"]), device=device)
    n = raw["strain"].shape[-1]
    bank, spectra = place_bank(bank_cfg, sim["priors"], lambda p: mf.template_spectra(p, n), mf._lags(n)[0], progress)
    best, marginal = mf.bank_statistics(raw["strain"], spectra, progress)
    return {"mf_true": mf.true_scores(raw["strain"], params, progress),
            f"mf_bank{len(bank)}": best, f"mf_bank{len(bank)}_marginal": marginal}
