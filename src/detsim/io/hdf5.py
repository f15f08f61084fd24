"""HDF5 shower files: the CaloChallenge layout (read and write) and the CaloGAN layout (read).

CaloChallenge: `incident_energies` (N, 1) and `showers` (N, n_voxels), MeV. We write float64 because
the challenge's own evaluation script fails on float32 input; we read any float dtype.
CaloGAN: `layer_0` (N, 3, 96), `layer_1` (N, 12, 12), `layer_2` (N, 12, 6) in MeV and `energy` (N, 1)
in GeV, converted to MeV on read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from detsim.errors import DataFileError
from detsim.io.validation import ValidationRules, check_incident_energies, check_shower_chunk
from detsim.io.writer import ShowerWriter
from detsim.showers import CaloShowers

ENERGY_KEY = "incident_energies"
SHOWER_KEY = "showers"
CALOGAN_LAYER_KEYS = ("layer_0", "layer_1", "layer_2")
CALOGAN_ENERGY_KEY = "energy"
GEV = 1000.0


def open_hdf5(path: str | Path) -> h5py.File:
    """Open read-only, turning "missing", "not HDF5" and "truncated" into DataFileError."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, None, "an existing HDF5 file", "no such file")
    if path.stat().st_size == 0:
        raise DataFileError(path, None, "an HDF5 file", "an empty file (0 bytes)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataFileError(path, None, "a readable HDF5 file", f"not HDF5 or truncated ({exc})") from exc


def detect_layout(handle: h5py.File) -> str:
    if SHOWER_KEY in handle and ENERGY_KEY in handle:
        return "calochallenge"
    if all(k in handle for k in CALOGAN_LAYER_KEYS) and CALOGAN_ENERGY_KEY in handle:
        return "calogan"
    missing = [k for k in (ENERGY_KEY, SHOWER_KEY) if k not in handle]
    raise DataFileError(
        handle.filename,
        ", ".join(missing),
        f"datasets '{ENERGY_KEY}' and '{SHOWER_KEY}' (CaloChallenge) or layer_0..2 + energy (CaloGAN)",
        f"keys {sorted(handle.keys())}",
    )


def _dataset(handle: h5py.File, key: str) -> h5py.Dataset:
    obj = handle.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise DataFileError(handle.filename, key, "a dataset", "missing" if obj is None else type(obj).__name__)
    return obj


def count_hdf5(path: str | Path) -> int:
    with HDF5ShowerFile(path) as file:
        return file.n_rows


def _read_energies(handle: h5py.File, layout: str, start: int, stop: int) -> np.ndarray:
    """Incident energies of rows [start, stop) as float32 (n,), MeV."""
    if layout == "calochallenge":
        return _dataset(handle, ENERGY_KEY).astype(np.float32)[start:stop].reshape(-1)
    return (_dataset(handle, CALOGAN_ENERGY_KEY)[start:stop].reshape(-1) * GEV).astype(np.float32)


def _read_block(handle: h5py.File, layout: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Read rows [start, stop) as float32 (energies (n,), showers (n, n_voxels)), MeV."""
    path = handle.filename
    try:
        # HDF5 converts to float32 while reading, so no float64 copy of the chunk is ever held in memory.
        if layout == "calochallenge":
            e = _read_energies(handle, layout, start, stop)
            return e, _dataset(handle, SHOWER_KEY).astype(np.float32)[start:stop]
        layers = [_dataset(handle, k).astype(np.float32)[start:stop] for k in CALOGAN_LAYER_KEYS]
        e = _read_energies(handle, layout, start, stop)
        return e, np.concatenate([arr.reshape(arr.shape[0], -1) for arr in layers], axis=1)
    except OSError as exc:
        raise DataFileError(path, None, f"readable rows {start}..{stop}", f"read error ({exc})") from exc


def _check_lengths(handle: h5py.File, layout: str) -> int:
    keys = (ENERGY_KEY, SHOWER_KEY) if layout == "calochallenge" else (CALOGAN_ENERGY_KEY, *CALOGAN_LAYER_KEYS)
    datasets = {k: _dataset(handle, k) for k in keys}
    for k, ds in datasets.items():
        if ds.ndim == 0:
            raise DataFileError(handle.filename, k, "a dataset with one row per shower", "a scalar dataset")
    lengths = {k: int(ds.shape[0]) for k, ds in datasets.items()}
    if len(set(lengths.values())) != 1:
        raise DataFileError(handle.filename, ", ".join(keys), "the same number of entries", str(lengths))
    n = lengths[keys[0]]
    if n == 0:
        raise DataFileError(handle.filename, keys[-1], "at least one shower", "0 entries")
    return n


class HDF5ShowerFile:
    """One shower file open for reading (a context manager): its row count, validated chunks of showers, and its
    incident energies alone. Opened once, it serves both the count and the rows (shards are not opened twice)."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.handle = open_hdf5(path)
        try:
            self.layout = detect_layout(self.handle)
        except BaseException:
            self.handle.close()
            raise

    def __enter__(self) -> "HDF5ShowerFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    @property
    def n_rows(self) -> int:
        """The number of showers the file says it holds (its datasets' lengths are checked on reading)."""
        key = SHOWER_KEY if self.layout == "calochallenge" else CALOGAN_LAYER_KEYS[0]
        return int(_dataset(self.handle, key).shape[0])

    @property
    def keys(self) -> tuple[str, str]:
        """The datasets of the incident energies and the voxels, as errors name them."""
        return (ENERGY_KEY, SHOWER_KEY) if self.layout == "calochallenge" else (CALOGAN_ENERGY_KEY, "layer_0..2")

    def chunks(self, chunk_size: int, n_voxels: int | None = None, rules: ValidationRules = ValidationRules(),
               start: int = 0, stop: int | None = None) -> Iterator[CaloShowers]:
        """Validated chunks of at most `chunk_size` showers from rows [start, stop)."""
        n = _check_lengths(self.handle, self.layout)
        stop = n if stop is None else min(stop, n)
        for first in range(start, stop, chunk_size):
            e, s = _read_block(self.handle, self.layout, first, min(first + chunk_size, stop))
            check_shower_chunk(self.path, e, s, n_voxels, self.keys, rules, first_entry=first)
            yield CaloShowers(e, s)

    def incident_energies(self, rules: ValidationRules = ValidationRules(), start: int = 0,
                          stop: int | None = None) -> np.ndarray:
        """The incident energies (MeV, float32) of rows [start, stop), validated, without reading a voxel."""
        n = _check_lengths(self.handle, self.layout)
        stop = n if stop is None else min(stop, n)
        try:
            energies = _read_energies(self.handle, self.layout, start, max(start, stop))
        except OSError as exc:
            raise DataFileError(self.path, self.keys[0], f"readable rows {start}..{stop}",
                                f"read error ({exc})") from exc
        check_incident_energies(self.path, energies, self.keys[0], rules, first_entry=start)
        return energies


def iter_hdf5(
    path: str | Path,
    chunk_size: int,
    n_voxels: int | None = None,
    rules: ValidationRules = ValidationRules(),
    start: int = 0,
    stop: int | None = None,
) -> Iterator[CaloShowers]:
    """Stream validated chunks of at most `chunk_size` showers from rows [start, stop)."""
    with HDF5ShowerFile(path) as file:
        yield from file.chunks(chunk_size, n_voxels, rules, start, stop)


class HDF5ShowerWriter(ShowerWriter):
    """Append shower blocks to a CaloChallenge-layout file (float64, gzip), so nothing big sits in memory.

    It writes the path it is given; callers put the file in place with `atomic_output` (one go) or
    `detsim.io.resume.resumable_output` (long jobs that continue after a kill, one file per block).
    """

    def __init__(self, path: str | Path, n_voxels: int, compression_level: int = 4, attrs: dict | None = None,
                 scratch: bool = False):
        """scratch: a file read back once by detsim (resume blocks): float32 (what CaloShowers holds, lossless)
        and LZF without shuffle: 1.3 s to write and read back 4096 dataset-2 showers against 2.5 s for gzip-1
        with shuffle, at a quarter of the raw size (uncompressed: 0.13 s but 4x the disk; benchmarks/bench_resume.py)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = h5py.File(self.path, "w")
        chunk_rows = max(1, min(1024, (1 << 20) // (8 * n_voxels)))
        opts: dict = (dict(compression="lzf", dtype="f4") if scratch
                      else dict(compression="gzip", compression_opts=compression_level, shuffle=True, dtype="f8"))
        self._energy = self._handle.create_dataset(
            ENERGY_KEY, shape=(0, 1), maxshape=(None, 1), chunks=(max(chunk_rows, 1024), 1), **opts
        )
        self._showers = self._handle.create_dataset(
            SHOWER_KEY, shape=(0, n_voxels), maxshape=(None, n_voxels), chunks=(chunk_rows, n_voxels), **opts
        )
        for key, value in (attrs or {}).items():
            self._handle.attrs[key] = value
        self.n_written = 0

    def append(self, chunk: CaloShowers) -> None:
        n = len(chunk)
        end = self.n_written + n
        self._showers.resize(end, axis=0)
        self._showers[self.n_written : end] = chunk.showers.astype(np.float64)
        self._energy.resize(end, axis=0)  # energies last: both lengths agree once this row count is visible
        self._energy[self.n_written : end] = chunk.incident_energy.reshape(-1, 1).astype(np.float64)
        self._handle.flush()
        self.n_written = end

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._handle.id.valid:
            self._handle.close()
