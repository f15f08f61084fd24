"""Continuous detector strain with BBH injections, as a search analyses it (MLGWSC-1 layout, `detsim.gw.strain`).

`detsim-simulate simulator=gw_stream duration=86400 seed=1 out=stream/` writes `stream/foreground.hdf` (noise plus
injections), `stream/background.hdf` (the same noise without them, MLGWSC-1's "background" file) and
`stream/injections.hdf` (one row per injection: `tc`, masses, spins, angles, `distance`, `chirp_distance`,
`optimal_snr_<det>`).

Noise: Gaussian, coloured by a zero-phase FIR filter whose gain is sqrt(S(f) fs / 2) for the configured analytic PSD
(conf/gw/psd), applied to white noise drawn in seeded blocks (`noise_block` s) on one grid that starts at
`gps_start`: any sample depends only on (seed, detector, time), never on segmenting, sharding or resuming, and the
noise runs on across segment and shard boundaries. The filter is `filter_duration` s long (Hann-tapered), so the
PSD is reproduced at a resolution of 1 / filter_duration (checked in the tests: Welch ratio ~1 in 20-500 Hz).

Injections: mergers (geocentric `tc`) follow each other by a gap uniform in `injections.spacing` (24-30 s: the
signals, at most a few seconds long in band, never overlap); none within `injections.padding` of a segment edge.
Intrinsic and angular parameters come from the priors (conf/gw/priors), the chirp distance is uniform in volume over
`injections.chirp_distance` (MLGWSC-1 dataset 1: 130-350 Mpc), and the luminosity distance is
chirp_distance x (Mc / Mc(1.4, 1.4))^(5/6) (pycbc's `chirp_distance` convention), so the sensitive volume is
measurable over the whole mass range. Injection k draws from its own seed (seed, k).

Shards and resume (docs/production.md): `shard=k` writes the k-th stretch of `duration` seconds (files `-NNNN`);
the shards of one seed join into the one continuous stream. Each finished segment is a file in
`<out>/<name>.partial/`; a killed job rerun with the same command continues after its last finished segment.
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy.signal import fftconvolve

import detsim
from detsim.config import flag
from detsim.errors import ConfigError, DataFileError
from detsim.files import atomic_output, check_output_file
from detsim.gw.noise import analytic_psd
from detsim.gw.priors import plain_priors
from detsim.gw.strain import KNOWN_DETECTORS, set_attrs, write_injections, write_segment
from detsim.gw.stream_injections import (EXTRINSIC, REFERENCE_CHIRP_MASS, Injection, injection_row, make_injection,
                                          merger_times)

INTRINSIC = ("mass1", "mass2", "spin1z", "spin2z")
FINGERPRINT_FILE = "fingerprint.json"
LOCK_FILE = ".lock"


def _number(value: Any, key: str, positive: bool = True, whole: bool = False) -> float:
    """A config number, or a one-line ConfigError naming the key (duration=abc, duration=-5, duration=null)."""
    if value is None:
        raise ConfigError(f"{key}: expected a positive number of seconds ({key}=<s>), found null")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a {'positive ' if positive else ''}number of seconds, found {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise ConfigError(f"{key}: expected a positive number of seconds, found {value!r}")
    if whole and number != int(number):
        raise ConfigError(f"{key}: expected a whole number of seconds (GPS segment names are integers), found {value!r}")
    return number


def check_detectors(detectors: Sequence[str], psd: Mapping[str, Any], key: str = "simulator.detectors") -> tuple[str, ...]:
    """Detector names known to detsim and given a PSD; anything else is a one-line ConfigError."""
    detectors = tuple(str(d) for d in detectors)
    if not detectors:
        raise ConfigError(f"{key}: expected at least one detector among {', '.join(KNOWN_DETECTORS)}, found none")
    for det in detectors:
        if det not in KNOWN_DETECTORS or det not in psd:
            known = [d for d in KNOWN_DETECTORS if d in psd]
            raise ConfigError(f"{key}: unknown detector {det!r}; expected detectors with a PSD in simulator.psd "
                              f"({', '.join(known)})")
    if len(set(detectors)) != len(detectors):
        raise ConfigError(f"{key}: a detector is listed twice: {list(detectors)}")
    return detectors


@dataclass(frozen=True)
class StreamSpec:
    """Everything the stream depends on, as plain values."""

    seed: int
    detectors: tuple[str, ...]
    psds: tuple[str, ...]
    psd_f_low: float
    sample_rate: float
    gps_start: int
    duration: int                 # s per shard
    shard: int | None
    segment_duration: int
    noise_block: float
    filter_duration: float
    approximant: str
    f_lower: float
    f_ref: float
    snr_f_lower: float
    injections: bool
    spacing: tuple[float, float]
    padding: float
    chirp_distance: tuple[float, float]
    background: bool
    dtype: str
    priors: Mapping[str, Any] = field(hash=False)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "StreamSpec":
        """The stream a `detsim-simulate simulator=gw_stream` config asks for, validated before any work."""
        sim = cfg["simulator"]
        duration = _number(cfg.get("duration"), "duration", whole=True)
        fs = _number(sim["sample_rate"], "simulator.sample_rate")
        detectors = check_detectors(list(sim["detectors"]), sim["psd"])
        segment = _number(sim["segment_duration"], "simulator.segment_duration", whole=True)
        block = _number(sim["noise_block"], "simulator.noise_block")
        filt = _number(sim["filter_duration"], "simulator.filter_duration")
        if filt > block:
            raise ConfigError(f"simulator.filter_duration: expected at most noise_block ({block} s), found {filt}")
        for key, value in (("noise_block", block), ("filter_duration", filt)):
            if abs(value * fs - round(value * fs)) > 1e-9:
                raise ConfigError(f"simulator.{key}: expected a whole number of samples at {fs} Hz, found {value} s")
        inj = sim["injections"]
        spacing = (float(inj["spacing"][0]), float(inj["spacing"][1]))
        if not 0 < spacing[0] <= spacing[1]:
            raise ConfigError(f"simulator.injections.spacing: expected [low, high] with 0 < low <= high, found {list(spacing)}")
        dist = (float(inj["chirp_distance"]["low"]), float(inj["chirp_distance"]["high"]))
        if not 0 <= dist[0] < dist[1]:
            raise ConfigError(f"simulator.injections.chirp_distance: expected 0 <= low < high, found {list(dist)}")
        shard = cfg.get("shard")
        if shard is not None and (isinstance(shard, bool) or not str(shard).isdigit()):
            raise ConfigError(f"shard: expected an integer >= 0 (one SLURM array task), found {shard!r}")
        priors = plain_priors(sim["priors"])
        dtype = str(sim.get("dtype", "float32"))
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"simulator.dtype: expected float32 or float64, found {dtype!r}")
        return cls(
            seed=int(cfg["seed"]), detectors=detectors, psds=tuple(str(sim["psd"][d]) for d in detectors),
            psd_f_low=float(sim["psd"]["f_low"]), sample_rate=fs, gps_start=int(sim["gps_start"]),
            duration=int(duration), shard=None if shard is None else int(shard), segment_duration=int(segment),
            noise_block=block, filter_duration=filt, approximant=str(sim["approximant"]),
            f_lower=float(sim["f_lower"]), f_ref=float(sim.get("f_ref", sim["f_lower"])),
            snr_f_lower=float(sim["snr_f_lower"]), injections=bool(inj["enabled"]), spacing=spacing,
            padding=float(inj["padding"]), chirp_distance=dist, background=bool(sim["background"]), dtype=dtype,
            priors=priors,
        )

    @property
    def start(self) -> int:
        """GPS start of this shard."""
        return self.gps_start + (self.shard or 0) * self.duration

    @property
    def end(self) -> int:
        return self.start + self.duration

    def segments(self) -> list[tuple[int, int]]:
        """(GPS start, GPS end) of this shard's segments: `segment_duration` each, the last one shorter."""
        return [(s, min(s + self.segment_duration, self.end)) for s in range(self.start, self.end, self.segment_duration)]

    def suffix(self) -> str:
        return "" if self.shard is None else f"-{self.shard:04d}"


# -- noise -----------------------------------------------------------------------------------------------------

def fir_kernel(psd_name: str, sample_rate: float, filter_duration: float, f_low: float) -> np.ndarray:
    """Zero-phase colouring filter (centred, Hann-tapered) with gain sqrt(S(f) fs / 2): unit-variance white noise
    (one-sided PSD 2 / fs) filtered by it has one-sided PSD S(f)."""
    n = int(round(filter_duration * sample_rate))
    gain = np.sqrt(analytic_psd(psd_name, n, sample_rate, f_low) * sample_rate / 2.0)
    return np.roll(np.fft.irfft(gain, n=n), n // 2) * np.hanning(n)


class NoiseStream:
    """Coloured Gaussian noise of each detector on the global sample grid that starts at `spec.gps_start`."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.block = int(round(spec.noise_block * spec.sample_rate))
        self.kernels = [fir_kernel(p, spec.sample_rate, spec.filter_duration, spec.psd_f_low) for p in spec.psds]
        self._white: dict[tuple[int, int], np.ndarray] = {}
        self._coloured: dict[tuple[int, int], np.ndarray] = {}

    def white(self, det: int, block: int) -> np.ndarray:
        """Unit white noise of block `block` (>= -1) of detector `det`: seeded by (seed, detector, block)."""
        key = (det, block)
        if key not in self._white:
            if len(self._white) > 6 * len(self.kernels):
                self._white.clear()
            rng = np.random.default_rng([self.spec.seed, 0x57EA, det, block + 1])
            self._white[key] = rng.standard_normal(self.block)
        return self._white[key]

    def coloured(self, det: int, block: int) -> np.ndarray:
        key = (det, block)
        if key not in self._coloured:
            if len(self._coloured) > 2 * len(self.kernels):
                self._coloured.clear()
            white = np.concatenate([self.white(det, block + k) for k in (-1, 0, 1)])
            self._coloured[key] = fftconvolve(white, self.kernels[det], mode="same")[self.block : 2 * self.block]
        return self._coloured[key]

    def samples(self, det: int, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of the global grid (index 0 at gps_start)."""
        out = np.empty(stop - start)
        for block in range(start // self.block, (stop - 1) // self.block + 1):
            lo, hi = max(start, block * self.block), min(stop, (block + 1) * self.block)
            out[lo - start : hi - start] = self.coloured(det, block)[lo - block * self.block : hi - block * self.block]
        return out


# -- writing, segment by segment, resumable ----------------------------------------------------------------------

def write_segment_file(spec: StreamSpec, noise: NoiseStream, start: int, end: int, injections: Sequence[Injection],
                       path: Path) -> None:
    """One segment (foreground, background, its injections' rows) as one file, written block by block."""
    fs = spec.sample_rate
    i0, i1 = int(round((start - spec.gps_start) * fs)), int(round((end - spec.gps_start) * fs))
    with atomic_output(path) as partial, h5py.File(partial, "w") as handle:
        kinds = ["foreground", *(["background"] if spec.background else [])]
        sets = {(kind, det): write_segment(handle.require_group(f"{kind}/{det}"), start, 1.0 / fs, i1 - i0, spec.dtype)
                for kind in kinds for det in spec.detectors}
        for lo in range(i0, i1, noise.block):
            hi = min(lo + noise.block, i1)
            for j, det in enumerate(spec.detectors):
                data = noise.samples(j, lo, hi)
                if spec.background:
                    sets["background", det][lo - i0 : hi - i0] = data
                for inj in injections:
                    a, b = max(lo, inj.first_sample), min(hi, inj.first_sample + inj.strain.shape[1])
                    if b > a:
                        data[a - lo : b - lo] += inj.strain[j, a - inj.first_sample : b - inj.first_sample]
                sets["foreground", det][lo - i0 : hi - i0] = data
        rows = [injection_row(inj, spec.detectors) for inj in injections]
        group = handle.create_group("injections")
        for name in (rows[0] if rows else {}):
            group.create_dataset(name, data=np.array([r[name] for r in rows], dtype=np.float64))


def output_paths(spec: StreamSpec, out: Path) -> dict[str, Path]:
    names = {"foreground": "foreground", "injections": "injections", **({"background": "background"} if spec.background else {})}
    return {kind: out / f"{name}{spec.suffix()}.hdf" for kind, name in names.items()}


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataFileError(folder, None, "an output no other job is writing", "it is locked by a running job with the same out=") from None
        yield


def _fingerprint(spec: StreamSpec) -> dict[str, Any]:
    """Every setting that changes the files (the spec) and the version: a resumed job must match it."""
    return json.loads(json.dumps({"spec": asdict(spec), "detsim_version": detsim.__version__}, default=str, sort_keys=True))


def write_stream(spec: StreamSpec, out: str | Path, overwrite: bool = False,
                 resume: bool = True, progress: bool = True) -> dict[str, Path]:
    """Write this shard's files under the folder `out`; return their paths by kind."""
    out = Path(out)
    if out.suffix in (".h5", ".hdf", ".hdf5"):
        raise DataFileError(out, None, "a folder for the stream's files (foreground.hdf, injections.hdf, ...)", "a file name")
    targets = output_paths(spec, out)
    for path in targets.values():
        check_output_file(path, overwrite)
    folder = out / f"foreground{spec.suffix()}.partial"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = _fingerprint(spec)
    with _locked(folder):
        stored = folder / FINGERPRINT_FILE
        if resume and stored.is_file() and json.loads(stored.read_text()) != wanted:
            raise DataFileError(folder, FINGERPRINT_FILE, "the partial output of this same command to resume (or resume=false)",
                                "one written with other settings")
        if not resume or not stored.is_file():
            for stale in folder.iterdir():
                if stale.name != LOCK_FILE:
                    stale.unlink()
            with atomic_output(stored) as partial:
                partial.write_text(json.dumps(wanted, sort_keys=True))
        segments = spec.segments()
        files = [folder / f"segment_{s}.hdf" for s, _ in segments]
        done = sum(f.is_file() for f in files)
        if done:
            print(f"resuming {folder}: {done} of {len(segments)} segments already written", file=sys.stderr)
        times = merger_times(spec)
        noise = NoiseStream(spec)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        try:
            with Progress(*columns, disable=not progress) as bar:
                task = bar.add_task(f"strain segments -> {out}", total=len(segments), completed=done)
                for (start, end), path in zip(segments, files):
                    if path.is_file():
                        continue
                    injections = [make_injection(spec, k, tc) for k, tc in times if start <= tc < end]
                    write_segment_file(spec, noise, start, end, injections, path)
                    bar.advance(task)
        except BaseException:
            if not any(f.is_file() for f in files):
                shutil.rmtree(folder, ignore_errors=True)
            else:
                print(f"kept finished segments in {folder}/: rerun the same command to resume", file=sys.stderr)
            raise
        _merge(spec, files, targets)
    shutil.rmtree(folder, ignore_errors=True)
    return targets


def _merge(spec: StreamSpec, files: Sequence[Path], targets: Mapping[str, Path]) -> None:
    attrs = {"detectors": list(spec.detectors), "sample_rate": spec.sample_rate, "seed": spec.seed,
             "gps_start": spec.start, "duration": spec.duration, "shard": -1 if spec.shard is None else spec.shard,
             "psds": list(spec.psds), "approximant": spec.approximant, "generator": "detsim.gw.stream"}
    table: dict[str, list[np.ndarray]] = {}
    for path in files:
        with h5py.File(path, "r") as handle:
            for name, ds in handle["injections"].items():
                table.setdefault(name, []).append(ds[()])
    columns = {k: np.concatenate(v) for k, v in table.items()}
    n_inj = len(columns.get("tc", []))
    for kind in ("foreground", "background"):
        if kind not in targets:
            continue
        with atomic_output(targets[kind]) as partial, h5py.File(partial, "w") as dst:
            for path in files:
                with h5py.File(path, "r") as src:
                    for det in spec.detectors:
                        for key in src[f"{kind}/{det}"]:
                            src.copy(src[f"{kind}/{det}/{key}"], dst.require_group(det), name=key)
            set_attrs(dst, {**attrs, "n_injections": n_inj if kind == "foreground" else 0,
                            "injection_file": targets["injections"].name if kind == "foreground" else "None"})
    with atomic_output(targets["injections"]) as partial:
        empty = {k: np.zeros(0) for k in ("tc", *INTRINSIC, *EXTRINSIC, "distance", "chirp_distance")}
        write_injections(partial, columns or empty, {
            **attrs, "approximant": spec.approximant, "f_lower": spec.f_lower, "f_ref": spec.f_ref,
            "distance_prior": "chirp_distance uniform in volume", "min_chirp_distance": spec.chirp_distance[0],
            "max_chirp_distance": spec.chirp_distance[1], "reference_chirp_mass": REFERENCE_CHIRP_MASS,
            "spacing": list(spec.spacing), "padding": spec.padding})


def run(cfg: Mapping[str, Any]) -> dict[str, Path]:
    """`detsim-simulate simulator=gw_stream duration=<s> seed=1 out=stream/`: the simulate app's entry."""
    spec = StreamSpec.from_config(cfg)
    return write_stream(spec, cfg["out"], overwrite=flag(cfg.get("overwrite", False), "overwrite"),
                        resume=flag(cfg.get("resume", True), "resume"), progress=bool(cfg.get("progress", True)))
