"""Shower file I/O: one entry point that picks the format from the file extension.

Every reader takes a shower source: one file, a glob or a list of shards (`detsim.io.shards`), read as
one set with rows numbered across the shards in order.

`.h5`/`.hdf5` -> `detsim.io.hdf5` (CaloChallenge layout, CaloGAN on read); `.root` -> `detsim.io.root`.
Readers stream validated chunks; writers append chunks. Models never see files.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from detsim.errors import DataFileError
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


def _root_layout(root: Any):
    from detsim.io.root import RootLayout

    return root if isinstance(root, RootLayout) else RootLayout.from_config(root)


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
    if not is_single_file(path):
        return _iter_shards(expand_shards(path), chunk_size, n_voxels, rules, root, start, stop)
    return _iter_file(path, chunk_size, n_voxels, rules, root, start, stop)


def _iter_file(
    path: str | Path, chunk_size: int, n_voxels: int | None, rules: ValidationRules, root: Any, start: int, stop: int | None
) -> Iterator[CaloShowers]:
    if file_format(path) == "hdf5":
        from detsim.io.hdf5 import iter_hdf5

        return iter_hdf5(path, chunk_size, n_voxels, rules, start, stop)
    from detsim.io.root import iter_root

    return iter_root(path, chunk_size, n_voxels, rules, _root_layout(root), start, stop)


def _iter_shards(
    files: list[Path], chunk_size: int, n_voxels: int | None, rules: ValidationRules, root: Any, start: int, stop: int | None
) -> Iterator[CaloShowers]:
    offset = 0
    for file in files:
        n = count_showers(file, root=root)
        lo, hi = max(start - offset, 0), n if stop is None else min(stop - offset, n)
        if lo < hi:
            yield from _iter_file(file, chunk_size, n_voxels, rules, root, lo, hi)
        offset += n
        if stop is not None and offset >= stop:
            return


def read_showers(path: Any, **kwargs: Any) -> CaloShowers:
    """The whole file (or rows [start, stop)) in memory; use `iter_showers` for big files."""
    return CaloShowers.concatenate(list(iter_showers(path, **kwargs)))


def count_showers(path: Any, root: Any = None) -> int:
    """Showers in a file, or summed over the shards of a glob or list."""
    if not is_single_file(path):
        return sum(count_showers(file, root=root) for file in expand_shards(path))
    if file_format(path) == "hdf5":
        from detsim.io.hdf5 import count_hdf5

        return count_hdf5(path)
    from detsim.io.root import count_root

    return count_root(path, _root_layout(root))


def open_writer(
    path: str | Path, n_voxels: int, root: Any = None, attrs: Mapping[str, Any] | None = None
) -> ShowerWriter:
    """A chunk-appending writer for the format the extension names."""
    if file_format(path) == "hdf5":
        from detsim.io.hdf5 import HDF5ShowerWriter

        return HDF5ShowerWriter(path, n_voxels, attrs=dict(attrs or {}))
    from detsim.io.root import RootShowerWriter

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
