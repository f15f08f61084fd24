"""ROOT shower files, read and written with uproot: one TTree, one entry per shower.

Three layouts, chosen by `RootLayout.mode` (configs in `conf/io/root/`):

- `fixed`: a fixed-size float array branch `showers[n_voxels]` plus a scalar incident-energy branch;
- `jagged`: a variable-length (std::vector-like) branch whose length must equal n_voxels in every entry;
- `cells`: one scalar branch per cell, selected by a pattern, as CaloGAN's Geant4 ntuples store them
  (`cell_0 ... cell_503` in MeV, three overflow cells `cell_504..506`, and `TotalEnergy`, the primary's
  kinetic energy divided by 1000 in the simulation, i.e. GeV; `energy_to_mev: 1000` undoes that).

Reading streams chunks of `chunk_size` entries through uproot's iterate machinery (`library="np"`,
`step_size` in entries): a file is never read whole. Writing uses LZ4, which reads back about ten
times faster than uproot's default zlib for float showers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

import awkward as ak
import numpy as np
import uproot

from detsim.errors import ConfigError, DataFileError, DetsimError
from detsim.io.validation import ValidationRules, check_incident_energies, check_shower_chunk
from detsim.io.writer import ShowerWriter
from detsim.showers import CaloShowers

MODES = ("fixed", "jagged", "cells")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class RootLayout:
    """Where a shower set lives inside a ROOT file, and in which units.

    cell_pattern: `cells` mode only; a format string with `{i}` (`cell_{i}`: cells 0..n_voxels-1, also
    used for writing) or a regular expression whose first group is the cell index (`cell_(\\d+)`:
    every matching branch, ordered by index; read only).
    energy_to_mev / voxel_to_mev: factors that turn stored values into MeV (1000 for GeV); the writer
    divides by them, so a file written with a layout reads back identically with the same layout.
    """

    tree: str = "showers"
    mode: str = "fixed"
    energy_branch: str = "incident_energy"
    voxel_branch: str = "showers"
    cell_pattern: str = "cell_{i}"
    energy_to_mev: float = 1.0
    voxel_to_mev: float = 1.0
    dtype: str = "float64"
    compression_level: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"ROOT layout: mode must be one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"ROOT layout: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.energy_to_mev <= 0 or self.voxel_to_mev <= 0:
            raise ConfigError("ROOT layout: energy_to_mev and voxel_to_mev must be positive")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "RootLayout":
        """Build from a `conf/io/root/*.yaml` mapping; None gives the `fixed` defaults."""
        if not cfg:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"ROOT layout: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**dict(cfg))

    @property
    def pattern_is_format(self) -> bool:
        return "{i}" in self.cell_pattern

    def cell_names(self, n_voxels: int) -> list[str]:
        """Branch names of cells 0..n_voxels-1 for a format pattern (what the writer creates)."""
        if not self.pattern_is_format:
            raise ConfigError(
                f"ROOT layout: cell_pattern {self.cell_pattern!r} is a regular expression; writing needs a "
                "format string with {i}, e.g. cell_{i}"
            )
        return [self.cell_pattern.format(i=i) for i in range(n_voxels)]


# --- reading -------------------------------------------------------------------------------------


def _open_file(path: Path) -> Any:
    """uproot.open with every way a file can be unusable turned into a DataFileError."""
    if not path.is_file():
        raise DataFileError(path, None, "an existing ROOT file", "no such file")
    size = path.stat().st_size
    if size == 0:
        raise DataFileError(path, None, "a ROOT file", "an empty file (0 bytes)")
    try:
        handle = uproot.open(path)
    except Exception as exc:  # uproot raises OSError/ValueError for non-ROOT bytes
        raise DataFileError(path, None, "a ROOT file", f"not ROOT or truncated ({_one_line(exc)})") from exc
    end = int(getattr(handle.file, "fEND", 0))
    if end > size:
        handle.close()
        raise DataFileError(path, None, f"{end} bytes (the size its header records)", f"{size} bytes: truncated")
    return handle


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _get_tree(handle: Any, path: Path, layout: RootLayout) -> Any:
    try:
        tree = handle[layout.tree]
    except KeyError:
        # RNTuples (what `file[name] = {...}` writes in uproot >= 5.4) read like TTrees: name them as well
        found = sorted({f"{k.split(';')[0]} ({c.replace('ROOT::', '')})" for k, c in handle.classnames().items()
                        if c in ("TTree", "ROOT::RNTuple")})
        raise DataFileError(path, layout.tree, "a TTree or RNTuple of that name (the ROOT layout's tree key)",
                            f"{', '.join(found) or 'no TTree or RNTuple'}") from None
    except Exception as exc:
        raise DataFileError(path, layout.tree, "a readable TTree", f"unreadable ({_one_line(exc)})") from exc
    if not hasattr(tree, "iterate"):
        raise DataFileError(path, layout.tree, "a TTree", type(tree).__name__)
    return tree


def _cell_branches(tree: Any, path: Path, layout: RootLayout, n_voxels: int | None) -> list[str]:
    names = list(tree.keys())
    if layout.pattern_is_format:
        if n_voxels is None:  # as many consecutive cells as the file holds
            present = set(names)
            n_voxels = 0
            while layout.cell_pattern.format(i=n_voxels) in present:
                n_voxels += 1
        wanted = layout.cell_names(n_voxels)
        missing = [b for b in wanted if b not in set(names)]
        if missing or not wanted:
            found = f"{len(wanted) - len(missing)} of them; first missing {missing[0]!r}" if missing else "none"
            raise DataFileError(
                path, f"{layout.tree}/{layout.cell_pattern}", f"{len(wanted) or 'some'} cell branches", found
            )
        return wanted
    regex = re.compile(layout.cell_pattern)
    matched = [(m, b) for b in names if (m := regex.fullmatch(b))]
    if not matched:
        key = f"{layout.tree}/{layout.cell_pattern}"
        raise DataFileError(path, key, "cell branches matching it", f"branches {names[:20]}")
    try:
        return [b for m, b in sorted(matched, key=lambda mb: int(mb[0].group(1)))]
    except (IndexError, ValueError):
        raise ConfigError(
            f"ROOT layout: cell_pattern {layout.cell_pattern!r} needs a first group capturing the cell index"
        ) from None


def _voxel_branches(tree: Any, path: Path, layout: RootLayout, n_voxels: int | None) -> list[str]:
    """The branches holding voxel energies, checked to exist; named in errors with the ones available."""
    names = list(tree.keys())
    for branch in (layout.energy_branch,) + ((layout.voxel_branch,) if layout.mode != "cells" else ()):
        if branch not in names:
            raise DataFileError(path, f"{layout.tree}/{branch}", "a branch of that name", f"branches {names[:20]}")
    if layout.mode == "cells":
        return _cell_branches(tree, path, layout, n_voxels)
    return [layout.voxel_branch]


def _voxel_key(layout: RootLayout) -> str:
    branch = layout.cell_pattern if layout.mode == "cells" else layout.voxel_branch
    return f"{layout.tree}/{branch}"


def _jagged_to_2d(values: Any, path: Path, key: str, n_voxels: int | None, first: int) -> np.ndarray:
    """A chunk of a variable-length branch as (n, n_voxels); every entry must hold n_voxels values."""
    counts = np.asarray(ak.num(values, axis=1))
    expected = int(counts[0]) if n_voxels is None and counts.size else n_voxels
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        row = int(bad[0])
        raise DataFileError(
            path, key, f"{expected} values in every entry (n_voxels)", f"{int(counts[row])} in entry {first + row}"
        )
    flat = ak.to_numpy(ak.flatten(values, axis=1))
    return flat.reshape(counts.size, expected if counts.size else 0)


def _chunk_arrays(
    arrays: Mapping[str, Any], layout: RootLayout, branches: list[str], path: Path, n_voxels: int | None, first: int
) -> tuple[np.ndarray, np.ndarray]:
    """(incident energies (n,), showers (n, n_voxels)) in MeV, float32, from one iterate step."""
    energy = np.asarray(arrays[layout.energy_branch]).reshape(-1)
    if layout.mode == "cells":
        # Filling cell rows of a (n_cells, n) array and returning its transpose (a Fortran-ordered view)
        # is four times faster than filling columns of an (n, n_cells) array.
        by_cell = np.empty((len(branches), energy.shape[0]), dtype=np.float32)
        for cell, branch in enumerate(branches):
            by_cell[cell] = arrays[branch]
        showers = by_cell.T
    elif layout.mode == "jagged":
        showers = _jagged_to_2d(arrays[layout.voxel_branch], path, _voxel_key(layout), n_voxels, first)
    else:
        values = np.asarray(arrays[layout.voxel_branch])
        if values.dtype == object:
            raise DataFileError(
                path, _voxel_key(layout), "a fixed-size array branch (mode fixed)", "a variable-length branch: use mode jagged"
            )
        showers = values.reshape(values.shape[0], -1)
    energy = _energies_in_mev(energy, layout)
    showers = showers.astype(np.float32, copy=False)
    if layout.voxel_to_mev != 1:
        showers *= np.float32(layout.voxel_to_mev)
    return energy, showers


def _energies_in_mev(energy: Any, layout: RootLayout) -> np.ndarray:
    energy = np.asarray(energy).reshape(-1)
    return (energy * layout.energy_to_mev if layout.energy_to_mev != 1 else energy).astype(np.float32)


class RootShowerFile:
    """One ROOT shower file open for reading (a context manager): the layout's tree, its entry count, validated
    chunks of showers, and its incident energies alone. Opened once, it serves both the count and the entries."""

    def __init__(self, path: str | Path, layout: RootLayout = RootLayout()) -> None:
        self.path, self.layout = Path(path), layout
        self.handle = _open_file(self.path)
        try:
            self.tree = _get_tree(self.handle, self.path, layout)
        except BaseException:
            self.handle.close()
            raise

    def __enter__(self) -> "RootShowerFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    @property
    def n_rows(self) -> int:
        """Number of entries (showers) in the layout's tree."""
        return int(self.tree.num_entries)

    def _window(self, start: int, stop: int | None) -> int:
        """The end of entries [start, stop) in a file that must hold at least one shower."""
        n = self.n_rows
        if n == 0:
            raise DataFileError(self.path, self.layout.tree, "at least one shower", "0 entries")
        return n if stop is None else min(stop, n)

    def chunks(self, chunk_size: int = 10_000, n_voxels: int | None = None, rules: ValidationRules = ValidationRules(),
               start: int = 0, stop: int | None = None) -> Iterator[CaloShowers]:
        """Validated chunks of at most `chunk_size` showers from entries [start, stop)."""
        path, layout = self.path, self.layout
        branches = _voxel_branches(self.tree, path, layout, n_voxels)
        stop = self._window(start, stop)
        if start >= stop:
            return
        library = "ak" if layout.mode == "jagged" else "np"
        steps = self.tree.iterate(
            [layout.energy_branch, *branches],
            step_size=chunk_size,
            entry_start=start,
            entry_stop=stop,
            library=library,
            how=dict,
        )
        keys = (f"{layout.tree}/{layout.energy_branch}", _voxel_key(layout))
        first = start
        while True:
            try:
                arrays = next(steps)
            except StopIteration:
                return
            except DetsimError:
                raise
            except Exception as exc:  # corrupt baskets surface as assorted uproot/decompression errors
                raise DataFileError(path, layout.tree, f"readable entries from {first}", _one_line(exc)) from exc
            energy, showers = _chunk_arrays(arrays, layout, branches, path, n_voxels, first)
            del arrays  # the stored-dtype copy must not stay alive while the next chunk is read
            check_shower_chunk(path, energy, showers, n_voxels, keys, rules, first_entry=first)
            yield CaloShowers(energy, showers)
            first += energy.shape[0]

    def incident_energies(self, rules: ValidationRules = ValidationRules(), start: int = 0,
                          stop: int | None = None) -> np.ndarray:
        """The incident energies (MeV, float32) of entries [start, stop), validated; only their branch is read."""
        path, layout = self.path, self.layout
        key = f"{layout.tree}/{layout.energy_branch}"
        names = list(self.tree.keys())
        if layout.energy_branch not in names:
            raise DataFileError(path, key, "a branch of that name", f"branches {names[:20]}")
        stop = self._window(start, stop)
        if start >= stop:
            return np.zeros(0, dtype=np.float32)
        try:
            values = self.tree[layout.energy_branch].array(entry_start=start, entry_stop=stop, library="np")
        except Exception as exc:  # corrupt baskets surface as assorted uproot/decompression errors
            raise DataFileError(path, layout.tree, f"readable entries from {start}", _one_line(exc)) from exc
        energies = _energies_in_mev(values, layout)
        check_incident_energies(path, energies, key, rules, first_entry=start)
        return energies


def count_root(path: str | Path, layout: RootLayout = RootLayout()) -> int:
    """Number of entries (showers) in the layout's tree."""
    with RootShowerFile(path, layout) as file:
        return file.n_rows


def iter_root(
    path: str | Path,
    chunk_size: int = 10_000,
    n_voxels: int | None = None,
    rules: ValidationRules = ValidationRules(),
    layout: RootLayout = RootLayout(),
    start: int = 0,
    stop: int | None = None,
) -> Iterator[CaloShowers]:
    """Stream validated chunks of at most `chunk_size` showers from entries [start, stop)."""
    with RootShowerFile(path, layout) as file:
        yield from file.chunks(chunk_size, n_voxels, rules, start, stop)


# --- writing -------------------------------------------------------------------------------------


class RootShowerWriter(ShowerWriter):
    """Append shower chunks to a new ROOT file (one TTree, LZ4), in any of the three layouts.

    Each `append` writes one basket per branch, so append chunks of thousands of showers, not one.
    """

    def __init__(self, path: str | Path, n_voxels: int, layout: RootLayout = RootLayout()) -> None:
        self.path = Path(path)
        self.n_voxels = int(n_voxels)
        self.layout = layout
        self.n_written = 0
        self._cells = layout.cell_names(self.n_voxels) if layout.mode == "cells" else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = uproot.recreate(self.path, compression=uproot.LZ4(layout.compression_level))
        dtype = np.dtype(layout.dtype)
        branch_types: dict[str, Any] = {layout.energy_branch: dtype}
        if layout.mode == "fixed":
            branch_types[layout.voxel_branch] = (dtype, (self.n_voxels,))
        elif layout.mode == "jagged":
            branch_types[layout.voxel_branch] = f"var * {layout.dtype}"
        else:
            branch_types.update({name: dtype for name in self._cells})
        self._tree = self._file.mktree(layout.tree, branch_types)

    def append(self, chunk: CaloShowers) -> None:
        if chunk.n_voxels != self.n_voxels:
            key = _voxel_key(self.layout)
            raise DataFileError(self.path, key, f"{self.n_voxels} voxels per shower", f"{chunk.n_voxels}")
        if len(chunk) == 0:
            return
        layout, dtype = self.layout, np.dtype(self.layout.dtype)
        energy = (chunk.incident_energy.astype(np.float64) / layout.energy_to_mev).astype(dtype)
        showers = chunk.showers.astype(np.float64) if dtype == np.float64 else chunk.showers
        if layout.voxel_to_mev != 1:
            showers = showers / layout.voxel_to_mev
        showers = np.ascontiguousarray(showers, dtype=dtype)
        data: dict[str, Any] = {layout.energy_branch: energy}
        if layout.mode == "fixed":
            data[layout.voxel_branch] = showers
        elif layout.mode == "jagged":
            data[layout.voxel_branch] = ak.unflatten(showers.reshape(-1), np.full(len(chunk), self.n_voxels))
        else:
            data.update({name: np.ascontiguousarray(showers[:, i]) for i, name in enumerate(self._cells)})
        self._tree.extend(data)
        self.n_written += len(chunk)

    def close(self) -> None:
        self._file.close()


