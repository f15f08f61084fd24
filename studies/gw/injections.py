"""The injections of the G2Net study: everything pycbc contributes to a synthetic GW train/test set (waveforms,
antenna patterns and delays, PSDs), drawn from the simulator's priors and written as one bundle (.npz), so a
machine without pycbc can rebuild the samples with numpy (`studies.gw.samples`).

pycbc is needed for three things only: waveforms, antenna patterns/light-travel delays and the analytic
PSDs. This script draws from the simulator's priors (conf/gw/priors) and stores
  * K distinct binaries per split (train and test use disjoint ones): the face-on, zero-phase h+ of each,
    cut to what a 2 s segment can see (plus a tapered lead-in so its Hilbert transform, hx, is clean),
    normalised to unit peak, float16, ragged in one flat array;
  * per sample: label, binary index, inclination, coa_phase, sky position, polarisation, merger time,
    requested network SNR, and pycbc's F+, Fx and Earth-centre delay per detector;
  * the grid template bank of conf/gw/bank/grid (same cut), for the bank matched filter (`bank_search`
    places and scores the stochastic bank of conf/gw/bank/default, which needs the fitted whitener);
  * the PSDs on the 2 s grid (SNR) and on the noise grid, and the resolved configs (simulator,
    preprocessing, model, data, bank) as JSON, so the other side needs no Hydra.
Orientation is applied on the other side with `detsim.gw.waveform.orient` (exact for 22-mode
approximants such as IMRPhenomD), so each sample still has its own inclination and phase.

    python -m studies.gw.injections --n-train 26000 --n-test 4000 --k-train 3000 --k-test 600 --out .gwbundle/bundle.npz
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from rich.progress import track

from detsim.gw.noise import analytic_psd
from detsim.gw.priors import draw_parameters
from detsim.gw.synth import antenna
from detsim.gw.template_bank import bank_parameters
from detsim.gw.waveform import polarisations
from detsim.paths import config_dir

SPLITS = {"train": 0, "test": 1}          # stream codes of the per-sample generators
WAVE_STREAM = {"train": 2, "test": 3}     # stream codes of the binaries' generators
INTRINSIC = ("mass1", "mass2", "spin1z", "spin2z")
EXTRINSIC = ("inclination", "coa_phase", "ra", "dec", "polarization", "t_merger", "snr")


def compose_configs(overrides: list[str] | None = None) -> dict[str, Any]:
    """Resolved simulator, preprocessing, model, data and bank configs as plain containers."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        sim = compose("simulate", overrides=["simulator=gw", *(overrides or [])]).simulator
        train = compose("train", overrides=["experiment=g2net_1dcnn"])
    bank = OmegaConf.load(config_dir() / "gw" / "bank" / "grid.yaml")   # stored as waves before any whitener: a grid
    plain = lambda c: OmegaConf.to_container(c, resolve=True)  # noqa: E731
    data = plain(train.data)
    return {"simulator": plain(sim), "preprocessing": data.pop("preprocessing"), "data": data,
            "model": plain(train.model), "bank": plain(bank)}


def draw_extrinsics(sim: Mapping[str, Any], split: str, n: int, n_waves: int, seed: int) -> dict[str, np.ndarray]:
    """Per-sample label and source parameters (the simulator's priors; masses/spins come from binary `wave`)."""
    rngs = [np.random.default_rng([seed, SPLITS[split], i]) for i in range(n)]
    target = np.array([rng.random() < float(sim["signal_fraction"]) for rng in rngs], dtype=np.int8)
    params = [draw_parameters(sim["priors"], rng) for rng in rngs]
    out = {k: np.array([p[k] for p in params]) for k in EXTRINSIC}
    out["target"] = target
    out["wave"] = (np.arange(n) % n_waves).astype(np.int32)
    gps = float(sim["gps_start"]) + out["t_merger"]
    out["f_plus"], out["f_cross"], out["delay"] = antenna(tuple(sim["detectors"]), gps, out["ra"], out["dec"],
                                                          out["polarization"])
    return out


def draw_binaries(sim: Mapping[str, Any], split: str, k: int, seed: int) -> np.ndarray:
    """(k, 4) mass1, mass2, spin1z, spin2z of the split's distinct binaries."""
    return np.array([[draw_parameters(sim["priors"], np.random.default_rng([seed, WAVE_STREAM[split], j]))[name]
                      for name in INTRINSIC] for j in range(k)])


def cut_waveform(intrinsic: np.ndarray, sim: Mapping[str, Any], lead: int, taper: int, tail: float
                 ) -> tuple[np.ndarray, int, float]:
    """Face-on, zero-phase h+ of one binary cut to [merger - lead - taper, end of ringdown above `tail` x peak],
    with a half-Hann taper where the cut removes inspiral; returns (h+ / peak, merger index in it, peak)."""
    params = dict(zip(INTRINSIC, map(float, intrinsic)), distance=1.0, inclination=0.0, coa_phase=0.0)
    pol = polarisations(params, str(sim["approximant"]), float(sim["sample_rate"]), float(sim["f_lower"]))
    amp = np.hypot(pol.plus, pol.cross)
    peak = float(amp.max())
    i0 = pol.merger_index
    start = max(i0 - lead - taper, int(np.flatnonzero(amp)[0]))
    loud = np.flatnonzero(amp[i0:] > tail * peak)
    stop = min(i0 + int(loud[-1]) + 1 + taper // 4 if len(loud) else i0 + 1, len(amp))
    cut = pol.plus[start:stop] / peak
    if start == i0 - lead - taper:
        cut[:taper] *= 0.5 * (1.0 - np.cos(np.pi * np.arange(taper) / taper))
    if stop < len(amp):
        cut[-(taper // 4):] *= 0.5 * (1.0 + np.cos(np.pi * np.arange(taper // 4) / (taper // 4)))
    return cut, i0 - start, peak


_JOB: dict[str, Any] = {}


def _cut_job(index: int) -> tuple[int, np.ndarray, int, float]:
    return (index, *cut_waveform(_JOB["intrinsic"][index], _JOB["sim"], _JOB["lead"], _JOB["taper"], _JOB["tail"]))


def pack_waveforms(intrinsic: np.ndarray, sim: Mapping[str, Any], lead: int, taper: int, tail: float,
                   workers: int, progress: bool) -> dict[str, np.ndarray]:
    """Ragged float16 storage: data (flat), offset (k+1), merger (k), peak (k)."""
    _JOB.update(intrinsic=intrinsic, sim=sim, lead=lead, taper=taper, tail=tail)
    k = len(intrinsic)
    pieces: list[np.ndarray | None] = [None] * k
    merger, peak = np.zeros(k, np.int32), np.zeros(k)
    if workers > 1:
        pool = mp.get_context("fork").Pool(workers)
        results = pool.imap_unordered(_cut_job, range(k), chunksize=8)
    else:
        pool, results = None, map(_cut_job, range(k))
    for j, cut, m, p in track(results, total=k, description=f"{k} waveforms", disable=not progress):
        pieces[j], merger[j], peak[j] = cut.astype(np.float16), m, p
    if pool is not None:
        pool.close()
    lengths = np.array([len(p) for p in pieces])
    return {"data": np.concatenate(pieces), "offset": np.r_[0, np.cumsum(lengths)].astype(np.int64),
            "merger": merger, "peak": peak, "intrinsic": intrinsic.astype(np.float32)}


def build_bundle(out: str | Path, n_train: int, n_test: int, k_train: int, k_test: int, seed: int = 1,
                 noise_seed: int = 7, workers: int = 1, taper: int = 256, tail: float = 1e-3,
                 overrides: list[str] | None = None, progress: bool = True, bank: bool = True) -> Path:
    """Draw, compute with pycbc and write the bundle (.npz, compressed); returns its path."""
    cfg = compose_configs(overrides)
    sim = cfg["simulator"]
    fs = float(sim["sample_rate"])
    n = int(round(float(sim["duration"]) * fs))
    noise_n = int(round(float(sim["noise_duration"]) * fs))
    sizes = {"train": (n_train, k_train), "test": (n_test, k_test)}
    arrays: dict[str, np.ndarray] = {}
    extr = {split: draw_extrinsics(sim, split, size, k, seed) for split, (size, k) in sizes.items()}
    latest = max(float(np.max(e["t_merger"][:, None] + e["delay"])) for e in extr.values() if len(e["delay"]))
    lead = int(np.ceil(latest * fs)) + 256          # what `place` can read before the merger (its pad is 128)
    for split, (size, k) in sizes.items():
        arrays.update({f"{split}_{key}": value for key, value in extr[split].items()})
        waves = pack_waveforms(draw_binaries(sim, split, k, seed), sim, lead, taper, tail, workers, progress)
        arrays.update({f"{split}_wave_{key}": value for key, value in waves.items()})
    if bank:   # the template-bank matched filter's templates, so the other side can score the bank search too
        grid = np.array([[p[name] for name in INTRINSIC] for p in bank_parameters(cfg["bank"], sim["priors"])])
        waves = pack_waveforms(grid, sim, lead, taper, tail, workers, progress)
        arrays.update({f"bank_wave_{key}": value for key, value in waves.items()})
    for j, det in enumerate(sim["detectors"]):
        arrays[f"psd_snr_{det}"] = analytic_psd(str(sim["psd"][det]), n, fs, float(sim["psd"]["f_low"]))
        arrays[f"psd_noise_{det}"] = analytic_psd(str(sim["psd"][det]), noise_n, fs, float(sim["psd"]["f_low"]))
    meta = {**cfg, "seed": seed, "noise_seed": noise_seed, "n_samples": n, "noise_samples": noise_n,
            "lead": lead, "taper": taper, "tail": tail, "sizes": sizes}
    arrays["config_json"] = np.array(json.dumps(meta))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=26000, help="training samples (the run holds out val from them)")
    ap.add_argument("--n-test", type=int, default=4000)
    ap.add_argument("--k-train", type=int, default=3000, help="distinct binaries of the training samples")
    ap.add_argument("--k-test", type=int, default=600, help="distinct binaries of the test samples (disjoint)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise-seed", type=int, default=7, help="seeds the noise drawn on the other side")
    ap.add_argument("--workers", type=int, default=mp.cpu_count())
    ap.add_argument("--taper", type=int, default=256, help="samples of half-Hann lead-in before the cut")
    ap.add_argument("--tail", type=float, default=1e-3, help="ringdown kept while |h| > tail x peak")
    ap.add_argument("--no-bank", action="store_true", help="leave out the grid template bank (conf/gw/bank/grid)")
    ap.add_argument("--out", default=".gwbundle/bundle.npz")
    ap.add_argument("overrides", nargs="*", help="simulate-config overrides, e.g. simulator/priors=bbh")
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = build_bundle(args.out, args.n_train, args.n_test, args.k_train, args.k_test, args.seed, args.noise_seed,
                        args.workers, args.taper, args.tail, args.overrides, bank=not args.no_bank)
    print(f"bundle {path}: {path.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - t0:.0f} s "
          f"({args.n_train} + {args.n_test} samples, {args.k_train} + {args.k_test} binaries)")


if __name__ == "__main__":
    main()
