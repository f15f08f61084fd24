"""The injections of a continuous strain stream: their times (every 24-30 s, kept from segment edges), parameters
(the prior, chirp distance uniform in volume), polarisations and projections onto the detectors, and their rows in
the injection file (split from `detsim.gw.stream`, which writes them into the strain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from detsim import extras
from detsim.errors import ConfigError
from detsim.gw.noise import analytic_psd, optimal_snr
from detsim.gw.priors import draw_one
from detsim.gw.synth import antenna
from detsim.gw.template_bank import chirp_mass
from detsim.gw.waveform import Polarisations, project

if TYPE_CHECKING:  # the stream's spec; the stream imports this module
    from detsim.gw.stream import StreamSpec

REFERENCE_CHIRP_MASS = float(chirp_mass(1.4, 1.4))   # pycbc's chirp_distance reference: a 1.4 + 1.4 Msun binary
EXTRINSIC = ("ra", "dec", "inclination", "polarization", "coa_phase")
IN_PLANE = ("spin1x", "spin1y", "spin2x", "spin2y")
SPHERICAL_SPINS = ("spin1_a", "spin1_polar", "spin1_azimuthal", "spin2_a", "spin2_polar", "spin2_azimuthal")


def draw_injection(spec: StreamSpec, index: int) -> dict[str, float]:
    """Parameters of injection `index` (all but `tc`), from its own generator. Spins: aligned (`spin1z`, `spin2z`),
    or any Cartesian components, or isotropic as magnitude and angles (`spin1_a`, `spin1_polar`, `spin1_azimuthal`,
    pycbc's names; conf/gw/priors/bbh_precessing)."""
    rng = np.random.default_rng([spec.seed, 0x1A7E, index])
    priors = spec.priors
    required = ("mass1", "mass2", *EXTRINSIC)
    missing = [k for k in required if k not in priors]
    if missing:
        raise ConfigError(f"simulator.priors lack {missing}; the stream draws {list(required)} and the spins")
    spins = sorted(k for k in priors if k in ("spin1z", "spin2z", *IN_PLANE, *SPHERICAL_SPINS))
    p = {name: draw_one(name, priors[name], rng) for name in (*required, *spins)}
    for i in (1, 2):
        if f"spin{i}_a" in p:   # isotropic spins given as magnitude and angles (pycbc's names)
            a, polar, azimuth = p.pop(f"spin{i}_a"), p.pop(f"spin{i}_polar"), p.pop(f"spin{i}_azimuthal")
            p[f"spin{i}x"], p[f"spin{i}y"] = a * np.sin(polar) * np.cos(azimuth), a * np.sin(polar) * np.sin(azimuth)
            p[f"spin{i}z"] = a * np.cos(polar)
        p.setdefault(f"spin{i}z", 0.0)
    if p["mass2"] > p["mass1"]:
        p["mass1"], p["mass2"] = p["mass2"], p["mass1"]
        for axis in "xyz":
            if f"spin1{axis}" in p:
                p[f"spin1{axis}"], p[f"spin2{axis}"] = p[f"spin2{axis}"], p[f"spin1{axis}"]
    low, high = spec.chirp_distance
    p["chirp_distance"] = draw_one("chirp_distance", {"dist": "uniform_volume", "low": low, "high": high}, rng)
    p["distance"] = p["chirp_distance"] * (chirp_mass(p["mass1"], p["mass2"]) / REFERENCE_CHIRP_MASS) ** (5.0 / 6.0)
    return {k: float(v) for k, v in p.items()}


def merger_times(spec: StreamSpec) -> list[tuple[int, float]]:
    """(index, tc) of the injections of this shard: the global sequence from gps_start, gaps uniform in `spacing`,
    kept where tc lies at least `padding` inside one of the shard's segments."""
    if not spec.injections:
        return []
    kept, tc, k = [], float(spec.gps_start), 0
    segments = spec.segments()
    while True:
        tc += np.random.default_rng([spec.seed, 0x7C, k]).uniform(*spec.spacing)
        if tc >= spec.end:
            return kept
        if tc >= spec.start and any(s + spec.padding <= tc <= e - spec.padding for s, e in segments):
            kept.append((k, tc))
        k += 1


def polarisations(params: Mapping[str, float], approximant: str, sample_rate: float, f_lower: float,
                  f_ref: float) -> Polarisations:
    """h+ and hx of one source with pycbc, every spin component given (precessing approximants use them)."""
    spins = {k: params.get(k, 0.0) for k in ("spin1x", "spin1y", "spin1z", "spin2x", "spin2y", "spin2z")}
    hp, hc = extras.pycbc().waveform.get_td_waveform(approximant=approximant, mass1=params["mass1"], mass2=params["mass2"], **spins,
                             distance=params["distance"], inclination=params["inclination"],
                             coa_phase=params["coa_phase"], delta_t=1.0 / sample_rate, f_lower=f_lower, f_ref=f_ref)
    return Polarisations(hp.numpy().astype(np.float64), hc.numpy().astype(np.float64),
                         int(round(-float(hp.start_time) * sample_rate)))


@dataclass
class Injection:
    index: int
    tc: float
    params: dict[str, float]
    first_sample: int = 0                      # global sample index of strain[:, 0]
    strain: np.ndarray | None = None           # (n_det, n) projected signal
    snr: dict[str, float] = field(default_factory=dict)


def make_injection(spec: StreamSpec, index: int, tc: float) -> Injection:
    """Injection `index` at `tc`, projected onto every detector (pycbc antenna patterns and delays at tc) on the
    global grid, with its optimal SNR per detector against the PSD the noise is drawn from."""
    params = draw_injection(spec, index)
    fs = spec.sample_rate
    pol = polarisations(params, spec.approximant, fs, spec.f_lower, spec.f_ref)
    fp, fc, dt = antenna(spec.detectors, np.array([tc]), np.array([params["ra"]]), np.array([params["dec"]]),
                         np.array([params["polarization"]]))
    n = 1 << int(np.ceil(np.log2(len(pol.plus) + 2 * fs)))     # a few fixed lengths: the PSDs stay cached
    first = int(np.floor((tc - spec.gps_start) * fs)) - pol.merger_index - int(fs)
    strain = np.stack([project(pol, fp[0, j], fc[0, j], tc + dt[0, j] - (spec.gps_start + first / fs), n, fs)
                       for j in range(len(spec.detectors))])
    snr = {det: float(optimal_snr(strain[j], analytic_psd(spec.psds[j], n, fs, spec.psd_f_low), fs, spec.snr_f_lower))
           for j, det in enumerate(spec.detectors)}
    return Injection(index, tc, params, first, strain, snr)


def injection_row(inj: Injection, detectors: Sequence[str]) -> dict[str, float]:
    row = {"tc": inj.tc, **inj.params}
    row.update({f"optimal_snr_{d}": inj.snr[d] for d in detectors})
    row["optimal_snr"] = float(np.sqrt(sum(v**2 for v in inj.snr.values())))
    return row
