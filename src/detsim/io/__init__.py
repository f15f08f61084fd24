"""Shower file I/O: one entry point that picks the format from the file extension.

Every reader takes a shower source: one file, a glob or a list of shards (`detsim.io.shards`), read as
one set with rows numbered across the shards in order, each shard opened once. `read_incident_energies` reads
the incident energies alone (generation from a reference file needs nothing else).

`.h5`/`.hdf5` -> `detsim.io.hdf5` (CaloChallenge layout, CaloGAN on read); `.root` -> `detsim.io.root`.
Readers stream validated chunks; writers append chunks. Models never see files.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from detsim.errors import DataFileError
from detsim.io.hdf5 import HDF5ShowerFile, HDF5ShowerWriter, count_hdf5
from detsim.io.root import RootLayout, RootShowerFile, RootShowerWriter, count_root
from detsim.io.shards import expand_shards, is_single_file
from detsim.io.validation import ValidationRules
from detsim.io.writer import ShowerWriter, atomic_output
from detsim.showers import CaloShowers

HDF5_SUFFIXES = (".h5", ".hdf5")
ROOT_SUFFIXES = (".root",)


def file_format(path: str | Path) -> str:
    """'hdf5' or 'root' from the extension; anything else is a user error."""
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in ROOT_SUFFIXES:
        return "root"
    raise DataFileError(path, None, f"a file ending in {HDF5_SUFFIXES + ROOT_SUFFIXES}", f"suffix {suffix!r}")


def _root_layout(root: Any) -> RootLayout:
    return root if isinstance(root, RootLayout) else RootLayout.from_config(root)


def open_shower_file(path: str | Path, root: Any = None) -> HDF5ShowerFile | RootShowerFile:
    """One shower file opened for reading, in the format its extension names (a context manager): `n_rows`,
    `chunks(chunk_size, n_voxels, rules, start, stop)`, `incident_energies(rules, start, stop)`."""
    if file_format(path) == "hdf5":
        return HDF5ShowerFile(path)
    return RootShowerFile(path, _root_layout(root))


def _rows_per_file(
    path: Any, files: list[Path] | None, root: Any, start: int, stop: int | None
) -> Iterator[tuple[HDF5ShowerFile | RootShowerFile, int, int | None]]:
    """(open file, first row, end row) for each file of a source whose rows [start, stop) are wanted, rows counted
    across the shards in order. Each file is opened once, for its count and its rows together; a single file is
    handed over whole, so its own checks (no rows at all, say) apply."""
    if files is None:
        with open_shower_file(path, root) as file:
            yield file, start, stop
        return
    offset = 0
    for shard in files:
        with open_shower_file(shard, root) as file:
            n = file.n_rows
            lo, hi = max(start - offset, 0), n if stop is None else min(stop - offset, n)
            if lo < hi:
                yield file, lo, hi
        offset += n
        if stop is not None and offset >= stop:
            return


def _source(path: Any, root: Any) -> list[Path] | None:
    """The shards of `path` (None for one plain file, whose format is checked now); a glob matching nothing, an
    unknown suffix or a bad ROOT layout fails here, when the read is asked for, not at its first row."""
    if not is_single_file(path):
        return expand_shards(path)
    if file_format(path) == "root":
        _root_layout(root)
    return None


def iter_showers(
    path: Any,
    chunk_size: int = 10_000,
    n_voxels: int | None = None,
    rules: ValidationRules | Mapping[str, Any] | None = None,
    root: Any = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[CaloShowers]:
    """Stream validated chunks (MeV, float32) of a shower source; `n_voxels` checks the geometry.

    `path` is a file, a glob or a list of shards; rows [start, stop) count across the shards in order.
    """
    rules = rules if isinstance(rules, ValidationRules) else ValidationRules.from_config(rules)
    files = _source(path, root)
    return (chunk for file, lo, hi in _rows_per_file(path, files, root, start, stop)
            for chunk in file.chunks(chunk_size, n_voxels, rules, lo, hi))


def read_showers(path: Any, **kwargs: Any) -> CaloShowers:
    """The whole file (or rows [start, stop)) in memory; use `iter_showers` for big files."""
    return CaloShowers.concatenate(list(iter_showers(path, **kwargs)))


def read_incident_energies(
    path: Any,
    rules: ValidationRules | Mapping[str, Any] | None = None,
    root: Any = None,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """The incident energies (MeV, float32) of a shower source, rows [start, stop) across its shards, validated as
    `iter_showers` validates them, without reading a voxel (HDF5: the `incident_energies` dataset; ROOT: the
    energy branch)."""
    rules = rules if isinstance(rules, ValidationRules) else ValidationRules.from_config(rules)
    parts = [file.incident_energies(rules, lo, hi) for file, lo, hi in
             _rows_per_file(path, _source(path, root), root, start, stop)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def count_showers(path: Any, root: Any = None) -> int:
    """Showers in a file, or summed over the shards of a glob or list."""
    if not is_single_file(path):
        return sum(count_showers(file, root=root) for file in expand_shards(path))
    if file_format(path) == "hdf5":
        return count_hdf5(path)
    return count_root(path, _root_layout(root))


def open_writer(
    path: str | Path, n_voxels: int, root: Any = None, attrs: Mapping[str, Any] | None = None
) -> ShowerWriter:
    """A chunk-appending writer for the format the extension names."""
    if file_format(path) == "hdf5":
        return HDF5ShowerWriter(path, n_voxels, attrs=dict(attrs or {}))
    return RootShowerWriter(path, n_voxels, _root_layout(root))


@contextmanager
def open_output(
    path: str | Path, n_voxels: int, root: Any = None, attrs: Mapping[str, Any] | None = None, overwrite: bool = True
) -> Iterator[ShowerWriter]:
    """`open_writer` on a temporary file that replaces `path` only when the block exits without an error."""
    with atomic_output(path, overwrite) as partial:
        writer = open_writer(partial, n_voxels, root=root, attrs=attrs)
        try:
            yield writer
        finally:
            writer.close()


def write_showers(path: str | Path, showers: CaloShowers, root: Any = None, attrs: Mapping[str, Any] | None = None) -> None:
    with open_output(path, showers.n_voxels, root=root, attrs=attrs) as writer:
        writer.append(showers)
