"""Synthetic G2Net data: coloured detector noise plus, in a fraction of samples, a BBH signal scaled to
a drawn network optimal SNR. Writes the G2Net layout and a side CSV of injection parameters and SNRs.

Sample i draws everything from `default_rng([seed, i])`, so results do not depend on n, on the number
of worker processes or on chunking. Noise-only samples also draw (unused) source parameters: the
true-template matched filter needs a template for every sample, signal or not.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from detsim import extras
from detsim.gw.io import write_labels, write_sample
from detsim.gw.noise import analytic_psd, coloured_noise, optimal_snr
from detsim.gw.priors import PARAMETERS, draw_parameters, plain_priors
from detsim.gw.waveform import Polarisations, polarisations, project

ID_MULTIPLIER = 0x9E3779B97F  # odd, so i -> (offset + i * M) mod 16**10 is a bijection: ids never collide
ID_SPACE = 16**10


@dataclass(frozen=True)
class SynthSpec:
    """Everything a worker needs, as plain values (picklable)."""

    seed: int
    detectors: tuple[str, ...]
    psds: tuple[str, ...]
    psd_f_low: float
    sample_rate: float
    n_samples: int
    noise_samples: int
    approximant: str
    f_lower: float
    snr_f_lower: float
    signal_fraction: float
    gps_start: float
    priors: Mapping[str, Any]

    @classmethod
    def from_config(cls, sim: Mapping[str, Any], seed: int) -> "SynthSpec":
        fs = float(sim["sample_rate"])
        detectors = tuple(sim["detectors"])
        priors = plain_priors(sim["priors"])
        return cls(
            seed=int(seed), detectors=detectors, psds=tuple(str(sim["psd"][d]) for d in detectors),
            psd_f_low=float(sim["psd"]["f_low"]), sample_rate=fs,
            n_samples=int(round(float(sim["duration"]) * fs)),
            noise_samples=int(round(float(sim["noise_duration"]) * fs)),
            approximant=str(sim["approximant"]), f_lower=float(sim["f_lower"]),
            snr_f_lower=float(sim["snr_f_lower"]), signal_fraction=float(sim["signal_fraction"]),
            gps_start=float(sim["gps_start"]), priors=priors,
        )

    def sample_id(self, index: int) -> str:
        offset = int(np.random.default_rng([self.seed, 2**31]).integers(ID_SPACE))
        return f"{(offset + index * ID_MULTIPLIER) % ID_SPACE:010x}"

    def psd(self, detector: int, n_samples: int) -> np.ndarray:
        return analytic_psd(self.psds[detector], n_samples, self.sample_rate, self.psd_f_low)


def antenna(detectors: Sequence[str], gps: np.ndarray, ra: np.ndarray, dec: np.ndarray,
            polarization: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F+, Fx and arrival delay after the Earth centre, (n, n_det), at GPS times `gps` (pycbc.detector)."""
    pycbc_detector = extras.pycbc().detector
    fp, fc, dt = (np.empty((len(gps), len(detectors))) for _ in range(3))
    for j, name in enumerate(detectors):
        det = pycbc_detector.Detector(name)
        fp[:, j], fc[:, j] = det.antenna_pattern(ra, dec, polarization, gps)
        dt[:, j] = det.time_delay_from_earth_center(ra, dec, gps)
    return fp, fc, dt


def _antenna(spec: SynthSpec, params: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F+, Fx and arrival delay (n, n_det) at each sample's merger time, vectorised over samples."""
    ra, dec, pol, t = (np.array([p[k] for p in params]) for k in ("ra", "dec", "polarization", "t_merger"))
    return antenna(spec.detectors, spec.gps_start + t, ra, dec, pol)


def noise_segment(noise_psds: Sequence[np.ndarray], noise_samples: int, n: int, sample_rate: float,
                  rng: np.random.Generator) -> np.ndarray:
    """(n_det, n) coloured noise: drawn over noise_samples per detector and the middle n kept, so it is not periodic."""
    cut = (noise_samples - n) // 2
    return np.stack([coloured_noise(psd, noise_samples, sample_rate, rng)[cut : cut + n] for psd in noise_psds])


def scaled_signal(pol: Polarisations, f_plus: Sequence[float], f_cross: Sequence[float], arrivals: Sequence[float],
                  snr: float, snr_psds: Sequence[np.ndarray], n: int, sample_rate: float,
                  snr_f_lower: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(n_det, n) projected signal scaled to network optimal SNR `snr`, its per-detector SNRs and the scale factor."""
    signal = np.stack([project(pol, fp, fc, t, n, sample_rate) for fp, fc, t in zip(f_plus, f_cross, arrivals)])
    snrs = np.array([optimal_snr(s, psd, sample_rate, snr_f_lower) for s, psd in zip(signal, snr_psds)])
    scale = float(snr / np.sqrt(np.sum(snrs**2)))
    return signal * scale, snrs * scale, scale


def iter_block(spec: SynthSpec, indices: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """(strain, signal alone, side-CSV row) of each sample in `indices`; signal is zeros for noise-only."""
    rngs = [np.random.default_rng([spec.seed, int(i)]) for i in indices]
    targets = [int(rng.random() < spec.signal_fraction) for rng in rngs]
    params = [draw_parameters(spec.priors, rng) for rng in rngs]
    fp, fc, dt = _antenna(spec, params)
    n, n_det = spec.n_samples, len(spec.detectors)
    snr_psds = [spec.psd(j, n) for j in range(n_det)]
    noise_psds = [spec.psd(j, spec.noise_samples) for j in range(n_det)]
    for k, index in enumerate(indices):
        p, rng = params[k], rngs[k]
        strain = noise_segment(noise_psds, spec.noise_samples, n, spec.sample_rate, rng)
        signal = np.zeros_like(strain)
        snrs = np.zeros(n_det)
        if targets[k]:
            pol = polarisations(p, spec.approximant, spec.sample_rate, spec.f_lower)
            signal, snrs, scale = scaled_signal(pol, fp[k], fc[k], p["t_merger"] + dt[k], p["snr"], snr_psds, n,
                                                spec.sample_rate, spec.snr_f_lower)
            strain += signal
            p = {**p, "distance": p["distance"] / scale}
        row = {"id": spec.sample_id(int(index)), "target": targets[k],
               **{name: p[name] for name in PARAMETERS if name != "snr"}}
        row["snr_target"] = p["snr"] if targets[k] else 0.0
        row.update({f"snr_{d}": float(s) for d, s in zip(spec.detectors, snrs)})
        row["snr_network"] = float(np.sqrt(np.sum(snrs**2)))
        yield strain, signal, row


def synthesise_block(spec: SynthSpec, indices: Sequence[int], out: str | None) -> list[dict[str, Any]]:
    """Make (and, if `out`, write) the samples `indices`; return their side-CSV rows."""
    rows = []
    for strain, _, row in iter_block(spec, indices):
        if out is not None:
            write_sample(out, row["id"], strain)
        rows.append(row)
    return rows


def _block_job(args: tuple[SynthSpec, list[int], str]) -> list[dict[str, Any]]:
    return synthesise_block(*args)


def synthesise(
    sim: Mapping[str, Any], n: int, seed: int, out: str | Path, workers: int = 1, block: int = 64, progress: bool = True
) -> Path:
    """Write n samples in the G2Net layout under `out`, plus `training_labels.csv` and the side CSV."""
    spec = SynthSpec.from_config(sim, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, list(range(s, min(s + block, n))), str(out)) for s in range(0, n, block)]
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"G2Net samples -> {out}", total=n)
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                for block_rows in pool.imap(_block_job, jobs):
                    rows.extend(block_rows)
                    bar.advance(task, len(block_rows))
        else:
            for job in jobs:
                block_rows = _block_job(job)
                rows.extend(block_rows)
                bar.advance(task, len(block_rows))
    write_labels(out, [r["id"] for r in rows], [r["target"] for r in rows])
    side = out / str(sim.get("injections_file", "injections.csv"))
    with side.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["id", "target"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def run(cfg: Mapping[str, Any]) -> Path:
    """`detsim-simulate simulator=gw n=2000 seed=1 out=g2net_dir/`: the simulate app's entry for gw."""
    sim = cfg["simulator"]
    return synthesise(sim, n=int(cfg["n"]), seed=int(cfg["seed"]), out=cfg["out"],
                      workers=int(sim.get("workers", 1)), progress=bool(cfg.get("progress", True)))
