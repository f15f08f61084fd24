"""Binary-black-hole waveforms (pycbc) and their projection onto a detector.

pycbc returns the polarisations zero-padded around a merger at t = 0; we keep the sample index of
t = 0 and cut the 2 s segment by time, after shifting by the arrival time at the detector (an integer
shift plus a sub-sample phase ramp in the frequency domain, over a padded stretch so the FFT's
wrap-around falls outside the segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from detsim import extras


@dataclass
class Polarisations:
    plus: np.ndarray
    cross: np.ndarray
    merger_index: int   # sample of t = 0 (the merger) in plus/cross


def polarisations(params: Mapping[str, float], approximant: str, sample_rate: float, f_lower: float) -> Polarisations:
    """h+ and hx of one source with pycbc's time-domain generator."""
    hp, hc = extras.pycbc().waveform.get_td_waveform(
        approximant=approximant,
        mass1=params["mass1"], mass2=params["mass2"],
        spin1z=params["spin1z"], spin2z=params["spin2z"],
        distance=params["distance"], inclination=params["inclination"], coa_phase=params["coa_phase"],
        delta_t=1.0 / sample_rate, f_lower=f_lower,
    )
    return Polarisations(hp.numpy().astype(np.float64), hc.numpy().astype(np.float64),
                         int(round(-float(hp.start_time) * sample_rate)))


def place(series: np.ndarray, merger_index: int, arrival: float, n_samples: int, sample_rate: float, pad: int = 128) -> np.ndarray:
    """The n_samples of `series` seen in a segment whose start is `arrival` seconds before the merger."""
    shift = arrival * sample_rate
    whole = int(np.floor(shift))
    frac = shift - whole
    start = merger_index - whole - pad
    length = n_samples + 2 * pad
    window = np.zeros(length)
    lo, hi = max(start, 0), min(start + length, len(series))
    if hi > lo:
        window[lo - start : hi - start] = series[lo:hi]
    if frac:
        freqs = np.fft.rfftfreq(length)
        window = np.fft.irfft(np.fft.rfft(window) * np.exp(-2j * np.pi * freqs * frac), n=length)
    return window[pad : pad + n_samples]


def project(pol: Polarisations, f_plus: float, f_cross: float, arrival: float, n_samples: int, sample_rate: float) -> np.ndarray:
    """Detector strain F+ h+ + Fx hx with the merger `arrival` seconds after the segment start."""
    combined = f_plus * pol.plus + f_cross * pol.cross
    return place(combined, pol.merger_index, arrival, n_samples, sample_rate)


def quadrature(plus: np.ndarray) -> np.ndarray:
    """h x of a face-on, zero-phase dominant-mode (l=|m|=2) waveform from its h+: the Hilbert transform.

    Exact for the whole of a pycbc array of an aligned-spin 22-only approximant (IMRPhenomD); on a cut-out
    stretch it is exact up to edge effects, which a smooth taper at the cut keeps at ~1e-4 of the peak."""
    spectrum = np.fft.rfft(plus)
    gain = np.full(len(spectrum), -1j)
    gain[0] = 0.0
    if len(plus) % 2 == 0:
        gain[-1] = 0.0
    return np.fft.irfft(spectrum * gain, n=len(plus))


def orient(plus0: np.ndarray, cross0: np.ndarray, merger_index: int, inclination: float,
           coa_phase: float) -> Polarisations:
    """Polarisations at (inclination, coa_phase) from the face-on, zero-phase ones of the same binary.

    For a dominant-mode waveform h+ = (1 + cos^2 i)/2 A cos(Phi + 2 phi), hx = cos i A sin(Phi + 2 phi);
    pycbc's IMRPhenomD follows this to rounding (tests/test_gw_bundle.py), so one stored waveform per
    binary serves every orientation without pycbc."""
    c, s = np.cos(2.0 * coa_phase), np.sin(2.0 * coa_phase)
    cos_i = np.cos(inclination)
    return Polarisations((1.0 + cos_i**2) / 2.0 * (c * plus0 - s * cross0), cos_i * (s * plus0 + c * cross0),
                         merger_index)
