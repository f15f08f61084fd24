"""Continuous strain and injection files in the layouts of MLGWSC-1 (arXiv 2209.11146) and pycbc.

Strain file (HDF5, as MLGWSC-1's `generate_data.py` writes it): one group per detector (`H1`, `L1`, `V1`), one
dataset per segment named by its integer GPS start time, each with attributes `start_time` (GPS s) and `delta_t`
(s); every detector holds the same segments. Root attributes say how the file was made (`detectors`,
`sample_rate`, `seed`, `injection_file`, `n_injections`: 0 for noise-only "background" data).

Injection file (HDF5, as `pycbc_create_injections` writes it and MLGWSC-1's `evaluate.py` reads it): one dataset
per parameter, one row per injection: `tc` (geocentric GPS merger time), `mass1`, `mass2` (detector frame, solar
masses), spins, `ra`, `dec`, `inclination`, `polarization`, `coa_phase` (rad), `distance` (luminosity, Mpc),
`chirp_distance` (Mpc), `optimal_snr_<det>`; static parameters (`approximant`, `f_lower`, the chirp-distance range
the sensitive volume needs) as root attributes.

Every problem a user can cause raises `DataFileError` naming the file and the key.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from detsim.errors import DataFileError

KNOWN_DETECTORS = ("H1", "L1", "V1")


def expand_paths(spec: str | Path | Sequence[str | Path], what: str = "strain file") -> list[Path]:
    """A file, a glob or a list of either -> sorted existing paths; a pattern matching nothing is an error."""
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if any(c in text for c in "*?["):
            found = sorted(glob.glob(text))
            if not found:
                raise DataFileError(text, None, f"a {what} pattern matching files", "no match")
            paths.extend(Path(p) for p in found if ".partial" not in Path(p).name)
        else:
            if not Path(text).is_file():
                raise DataFileError(text, None, f"an existing {what}", "no such file")
            paths.append(Path(text))
    return paths


def _open(path: Path, what: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataFileError(path, None, f"an HDF5 {what}", f"unreadable ({exc})") from None


@dataclass(frozen=True)
class Segment:
    """One stretch of continuous strain, present for every detector of its file."""

    path: str
    key: str              # dataset name inside each detector's group (the integer GPS start)
    start_time: float     # GPS s of sample 0
    delta_t: float
    n_samples: int

    @property
    def sample_rate(self) -> float:
        return 1.0 / self.delta_t

    @property
    def duration(self) -> float:
        return self.n_samples * self.delta_t

    @property
    def end_time(self) -> float:
        return self.start_time + self.duration


def strain_segments(paths: Iterable[Path]) -> tuple[tuple[str, ...], list[Segment]]:
    """The detectors and the time-sorted segments of strain files; every file must hold the same detectors, every
    detector the same segments (start, rate, length), one sample rate throughout, and no two segments may overlap."""
    detectors: tuple[str, ...] | None = None
    segments: list[Segment] = []
    for path in paths:
        with _open(path, "strain file") as handle:
            dets = tuple(k for k in handle.keys() if isinstance(handle[k], h5py.Group))
            if not dets:
                raise DataFileError(path, None, "one group per detector (MLGWSC-1 layout)", "no group")
            unknown = [d for d in dets if d not in KNOWN_DETECTORS]
            if unknown:
                raise DataFileError(path, unknown[0], f"detector groups among {', '.join(KNOWN_DETECTORS)}", "another name")
            if detectors is None:
                detectors = dets
            elif set(dets) != set(detectors):
                raise DataFileError(path, None, f"the detectors of the other files ({', '.join(detectors)})", ", ".join(dets))
            keys = sorted(handle[dets[0]].keys())
            for det in dets[1:]:
                if sorted(handle[det].keys()) != keys:
                    raise DataFileError(path, det, f"the same segments as {dets[0]}", "other segments")
            for key in keys:
                shapes = set()
                for det in dets:
                    ds = handle[det][key]
                    try:
                        shapes.add((float(ds.attrs["start_time"]), float(ds.attrs["delta_t"]), ds.shape))
                    except KeyError as exc:
                        raise DataFileError(path, f"{det}/{key}", "attributes start_time and delta_t", f"no {exc}") from None
                if len(shapes) != 1:
                    raise DataFileError(path, key, "one start time, rate and length for every detector", str(sorted(shapes)))
                start, delta_t, shape = shapes.pop()
                if len(shape) != 1 or delta_t <= 0:
                    raise DataFileError(path, f"{dets[0]}/{key}", "a 1-d strain series with delta_t > 0", f"shape {shape}, delta_t {delta_t}")
                segments.append(Segment(str(path), key, start, delta_t, int(shape[0])))
    if detectors is None:
        raise DataFileError("<none>", None, "at least one strain file", "none")
    segments.sort(key=lambda s: s.start_time)
    rates = {round(s.sample_rate, 6) for s in segments}
    if len(rates) > 1:
        raise DataFileError(segments[0].path, None, "one sample rate in every segment", f"{sorted(rates)} Hz")
    for a, b in zip(segments, segments[1:]):
        if b.start_time < a.end_time - 0.5 * a.delta_t:
            raise DataFileError(b.path, b.key, "segments that do not overlap", f"it starts before {a.key} ends")
    return detectors, segments


class StrainReader:
    """Reads stretches of a segment's strain (float64) for the search, one file handle per file kept open."""

    def __init__(self) -> None:
        self._handles: dict[str, h5py.File] = {}

    def __enter__(self) -> "StrainReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def read(self, segment: Segment, detector: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of `detector` in `segment`, as float64; NaN or inf is an error."""
        handle = self._handles.get(segment.path)
        if handle is None:
            handle = self._handles[segment.path] = _open(Path(segment.path), "strain file")
        data = np.asarray(handle[detector][segment.key][start:stop], dtype=np.float64)
        if not np.isfinite(data).all():
            raise DataFileError(segment.path, f"{detector}/{segment.key}", "finite strain", "NaN or inf")
        return data


def file_attrs(path: str | Path) -> dict[str, Any]:
    """The root attributes of an HDF5 file, bytes decoded."""
    with _open(Path(path), "file") as handle:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}


def write_segment(group: h5py.Group, start_time: int, delta_t: float, n_samples: int, dtype: str) -> h5py.Dataset:
    """An empty segment dataset of a detector group, named and labelled as MLGWSC-1 does."""
    ds = group.create_dataset(str(int(start_time)), shape=(n_samples,), dtype=dtype)
    ds.attrs["start_time"] = float(start_time)
    ds.attrs["delta_t"] = float(delta_t)
    return ds


def set_attrs(obj: h5py.File | h5py.Group | h5py.Dataset, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if isinstance(value, (list, tuple)):
            value = np.asarray([str(v) for v in value], dtype=h5py.string_dtype()) if value and isinstance(value[0], str) \
                else np.asarray(value)
        obj.attrs[key] = "None" if value is None else value


INJECTION_REQUIRED = ("tc", "mass1", "mass2", "distance")


def read_injections(paths: Sequence[Path]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Injection files (one per shard) concatenated, sorted by `tc`; their static attributes (from the first)."""
    columns: dict[str, list[np.ndarray]] = {}
    attrs: dict[str, Any] = {}
    for path in paths:
        with _open(path, "injection file") as handle:
            missing = [k for k in INJECTION_REQUIRED if k not in handle]
            if missing:
                raise DataFileError(path, missing[0], f"datasets {', '.join(INJECTION_REQUIRED)} (pycbc injection file)", "none")
            names = [k for k in handle.keys() if isinstance(handle[k], h5py.Dataset)]
            if columns and set(names) != set(columns):
                raise DataFileError(path, None, f"the columns of the other injection files", ", ".join(sorted(names)))
            for name in names:
                columns.setdefault(name, []).append(np.asarray(handle[name][()]))
            if not attrs:
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}
    table = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.argsort(table["tc"], kind="stable")
    return {k: v[order] for k, v in table.items()}, attrs


def write_injections(path: Path, table: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    with h5py.File(path, "w") as handle:
        for name, values in table.items():
            handle.create_dataset(name, data=np.asarray(values))
        set_attrs(handle, attrs)
