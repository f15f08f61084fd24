"""The samples of the G2Net study, rebuilt from a bundle with numpy: no pycbc needed.

A bundle (`studies.gw.injections`) holds what only pycbc can make: each binary's face-on h+, antenna patterns,
delays and PSDs. Samples are rebuilt with the simulator's own functions: `orient` (inclination, phase),
`scaled_signal` (projection with the bundled F+, Fx and delays, sub-sample shift, scaling to the requested network
optimal SNR against the PSD) and `noise_segment` (noise coloured in the frequency domain from the PSD). Sample i of
a split draws its noise from default_rng([noise_seed, split, i]), so the set does not depend on the number of
workers. Imports only numpy, scipy, torch and detsim modules that need nothing else, so it runs on a GPU machine
with no pycbc, Hydra or MLflow.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from detsim.gw.synth import noise_segment, scaled_signal
from detsim.gw.waveform import orient, quadrature
from detsim.gw.whiten import Whitener

SPLITS = {"train": 0, "test": 1}


@dataclass
class Bundle:
    """The loaded .npz: arrays by name plus the resolved configs (`meta`)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Bundle":
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(arrays, json.loads(str(arrays.pop("config_json"))))

    @property
    def sim(self) -> dict[str, Any]:
        return self.meta["simulator"]

    def size(self, split: str) -> int:
        return len(self.arrays[f"{split}_target"])

    def plus0(self, split: str, wave: int) -> tuple[np.ndarray, int]:
        """Face-on, zero-phase h+ (unit peak) of binary `wave` and its merger index; a packed bundle
        (studies.gw.int8_waveforms) stores it as int8 with a scale per binary."""
        off = self.arrays[f"{split}_wave_offset"]
        plus = self.arrays[f"{split}_wave_data"][off[wave] : off[wave + 1]].astype(np.float64)
        if f"{split}_wave_scale" in self.arrays:
            plus *= float(self.arrays[f"{split}_wave_scale"][wave])
        return plus, int(self.arrays[f"{split}_wave_merger"][wave])

    def psds(self, kind: str) -> list[np.ndarray]:
        return [self.arrays[f"psd_{kind}_{d}"] for d in self.sim["detectors"]]

    def redrawn(self, n: int, draw: int) -> "Bundle":
        """The bundle with the first n training samples re-drawn: every group of independently drawn
        parameters (binary, sky position with polarisation and its antenna responses, inclination, phase,
        merger time, SNR) permuted on its own among those rows, and fresh noise. Each group stays a sample
        of its prior, so the result is a new training set of the same distribution (same binaries). The
        antenna responses were computed at each row's own merger time; moving it by < 1 s turns the Earth
        by < 1e-4 rad, far below what the data resolve."""
        rng = np.random.default_rng([int(self.meta["noise_seed"]), 99, draw])
        arrays = dict(self.arrays)
        for group in (("wave",), ("ra", "dec", "polarization", "f_plus", "f_cross", "delay"), ("inclination",),
                      ("coa_phase",), ("t_merger",), ("snr",)):
            order = rng.permutation(n)
            for key in group:
                column = arrays[f"train_{key}"].copy()
                column[:n] = column[order]
                arrays[f"train_{key}"] = column
        out = Bundle(arrays, {**self.meta, "noise_seed": [int(self.meta["noise_seed"]), 99, draw]})
        return out.with_decoys(n, draw) if self.meta.get("decoys") else out

    def with_decoys(self, n: int, draw: int = 0) -> "Bundle":
        """The bundle with a share (`meta["decoys"]["fraction"]`) of the noise-only rows among the first n training
        rows turned into decoys: their drawn signal is injected with its merger moved to a time the prior excludes
        (uniform in `meta["decoys"]["window"]`, seconds), and their label stays 0. The matched filter only looks
        for mergers where the prior allows them, which is worth 0.007 of AUC to it (docs/gw.md); a network learns
        that preference only from noise unless it is shown signals outside the window that are not signals of the
        prior."""
        cfg = self.meta["decoys"]
        rng = np.random.default_rng([int(np.atleast_1d(self.meta["noise_seed"])[0]), 98, draw])
        arrays = dict(self.arrays)
        noise_rows = np.flatnonzero(arrays["train_target"][:n] == 0)
        chosen = rng.choice(noise_rows, int(round(float(cfg["fraction"]) * len(noise_rows))), replace=False)
        decoy = np.zeros(len(arrays["train_target"]), dtype=bool)
        decoy[chosen] = True
        t_merger = arrays["train_t_merger"].astype(np.float64)
        t_merger[chosen] = rng.uniform(*map(float, cfg["window"]), len(chosen))
        arrays.update(train_decoy=decoy, train_t_merger=t_merger)
        return Bundle(arrays, self.meta)


def rebuild_signal(bundle: Bundle, split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_det, n) signal of sample i at its requested network SNR (also for noise-only samples) and per-detector SNRs."""
    a, sim = bundle.arrays, bundle.sim
    plus0, merger = bundle.plus0(split, int(a[f"{split}_wave"][i]))
    pol = orient(plus0, quadrature(plus0), merger, float(a[f"{split}_inclination"][i]), float(a[f"{split}_coa_phase"][i]))
    arrivals = float(a[f"{split}_t_merger"][i]) + a[f"{split}_delay"][i].astype(np.float64)   # float32 when packed
    signal, snrs, _ = scaled_signal(pol, a[f"{split}_f_plus"][i].astype(np.float64), a[f"{split}_f_cross"][i].astype(np.float64), arrivals,
                                    float(a[f"{split}_snr"][i]), bundle.psds("snr"), int(bundle.meta["n_samples"]),
                                    float(sim["sample_rate"]), float(sim["snr_f_lower"]))
    return signal, snrs


def rebuild_parts(bundle: Bundle, split: str, i: int) -> tuple[np.ndarray, float]:
    """(2, n_det, n): sample i's noise and, for a labelled sample, its signal (zeros otherwise), and its SNR.

    Their sum is `rebuild_sample`; kept apart so training can pair every signal with fresh noise."""
    rng = np.random.default_rng([*np.atleast_1d(bundle.meta["noise_seed"]).tolist(), SPLITS[split], int(i)])
    noise = noise_segment(bundle.psds("noise"), int(bundle.meta["noise_samples"]), int(bundle.meta["n_samples"]),
                          float(bundle.sim["sample_rate"]), rng)
    decoy = f"{split}_decoy" in bundle.arrays and bool(bundle.arrays[f"{split}_decoy"][i])   # `Bundle.with_decoys`
    if not (bundle.arrays[f"{split}_target"][i] or decoy):
        return np.stack([noise, np.zeros_like(noise)]), 0.0
    signal, snrs = rebuild_signal(bundle, split, i)
    return np.stack([noise, signal]), float(np.sqrt(np.sum(snrs**2)))


def rebuild_sample(bundle: Bundle, split: str, i: int) -> tuple[np.ndarray, float]:
    """(n_det, n) strain of sample i (noise + signal if labelled 1) and its injected network SNR (0 if noise only)."""
    parts, snr = rebuild_parts(bundle, split, i)
    return parts.sum(axis=0), snr


_SHARED: dict[str, Any] = {}


def _rebuild_block(job: tuple[str, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    split, start, stop = job
    build = rebuild_parts if _SHARED.get("parts") else rebuild_sample
    out = [build(_SHARED["bundle"], split, i) for i in range(start, stop)]
    return start, np.stack([s for s, _ in out]).astype(np.float32), np.array([snr for _, snr in out])


def rebuild_split(bundle: Bundle, split: str, n: int, workers: int, block: int = 64,
                  progress: bool = True, parts: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Strain (n, n_det, n_samples) float32 and injected SNR of the first n samples of a split, in parallel.

    parts=True: (n, 2, n_det, n_samples), noise and signal apart (`rebuild_parts`)."""
    n_det = len(bundle.sim["detectors"])
    strain = np.empty((n, *((2,) if parts else ()), n_det, int(bundle.meta["n_samples"])), dtype=np.float32)
    snr = np.empty(n)
    jobs = [(split, s, min(s + block, n)) for s in range(0, n, block)]
    _SHARED["bundle"], _SHARED["parts"] = bundle, parts
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    results = pool.imap_unordered(_rebuild_block, jobs) if pool else map(_rebuild_block, jobs)
    for start, x, s in track(results, total=len(jobs), description=f"rebuild {split} ({n})", disable=not progress):
        strain[start : start + len(x)], snr[start : start + len(x)] = x, s
    if pool:
        pool.close()
    return strain, snr


def whitener_of(bundle: Bundle, noise: np.ndarray | None = None) -> Whitener:
    """The bundle's configured `Whitener`, fitted on `noise` (noise-only training strain) when given."""
    whitener = Whitener(**{k: v for k, v in bundle.meta["preprocessing"].items() if k != "_target_"})
    return whitener if noise is None else whitener.fit(noise)
