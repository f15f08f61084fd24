"""G2Net layout (gravitational-wave detection challenge, 2021) and its packed float32 HDF5 cache.

Layout: `<root>/<split>/<c0>/<c1>/<c2>/<id>.npy`, float64 (3, 4096) strain of H1, L1, V1 (2 s at
2048 Hz), `<c0..2>` the first three characters of the id; `<root>/training_labels.csv` with `id,target`.
Reading 100k small .npy files per epoch is slow, so `pack_cache` writes them once into one HDF5 file
that a datamodule loads whole. Every problem a user can cause raises DataFileError naming the file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
from rich.progress import Progress

from detsim.errors import DataFileError
from detsim.files import atomic_output

DETECTORS = ("H1", "L1", "V1")
SAMPLE_SHAPE = (3, 4096)
LABELS_FILE = "training_labels.csv"
CACHE_VERSION = 1


@dataclass
class G2NetArrays:
    """A whole G2Net set in memory: strain (N, 3, n_samples) float32, labels and optional per-sample SNR."""

    ids: np.ndarray
    strain: np.ndarray
    target: np.ndarray
    snr: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def sample_path(root: str | Path, sample_id: str, split: str = "train") -> Path:
    """Where the layout keeps `sample_id`: nested by its first three characters."""
    if len(sample_id) < 3:
        raise DataFileError(Path(root) / LABELS_FILE, "id", "ids of at least 3 characters", repr(sample_id))
    return Path(root) / split / sample_id[0] / sample_id[1] / sample_id[2] / f"{sample_id}.npy"


def write_sample(root: str | Path, sample_id: str, strain: np.ndarray, split: str = "train") -> Path:
    """Write one sample as the challenge did: float64 .npy of shape (3, n_samples)."""
    path = sample_path(root, sample_id, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(strain, dtype=np.float64))
    return path


def write_labels(root: str | Path, ids: Sequence[str], targets: Sequence[int]) -> Path:
    path = Path(root) / LABELS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "target"])
        writer.writerows(zip(ids, (int(t) for t in targets)))
    return path


def read_labels(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """ids (str) and targets (int8, 0/1) from `training_labels.csv`."""
    path = Path(root) / LABELS_FILE
    if not path.is_file():
        raise DataFileError(path, None, "a G2Net labels file with columns id,target", "no such file")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"id", "target"} <= set(reader.fieldnames):
            raise DataFileError(path, "header", "columns id,target", str(reader.fieldnames))
        rows = list(reader)
    ids = np.array([r["id"] for r in rows], dtype=str)
    try:
        targets = np.array([int(r["target"]) for r in rows], dtype=np.int8)
    except ValueError as exc:
        raise DataFileError(path, "target", "integers 0 or 1", str(exc)) from None
    if len(targets) and not np.isin(targets, (0, 1)).all():
        raise DataFileError(path, "target", "0 or 1", f"values {sorted(set(targets.tolist()))}")
    if len(set(ids.tolist())) != len(ids):
        raise DataFileError(path, "id", "unique ids", f"{len(ids) - len(set(ids.tolist()))} duplicates")
    return ids, targets


def read_side_column(path: str | Path, ids: np.ndarray, column: str) -> np.ndarray:
    """One float column of a side CSV keyed by `id` (e.g. the simulator's injections.csv), in `ids` order."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "id" not in reader.fieldnames or column not in reader.fieldnames:
            raise DataFileError(path, column, f"columns id and {column}", str(reader.fieldnames))
        values = {r["id"]: float(r[column]) for r in reader}
    missing = [i for i in ids if i not in values]
    if missing:
        raise DataFileError(path, "id", "a row for every labelled sample", f"{len(missing)} missing, e.g. {missing[0]}")
    return np.array([values[i] for i in ids], dtype=np.float32)


def read_sample(path: str | Path, shape: tuple[int, int] = SAMPLE_SHAPE) -> np.ndarray:
    """One sample, checked: present, of the expected shape and finite."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, None, f"a G2Net sample {shape}", "no such file (id in labels but not on disk)")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataFileError(path, None, "a .npy array", f"unreadable file ({exc})") from None
    if data.shape != tuple(shape):
        raise DataFileError(path, None, f"shape {tuple(shape)} (H1, L1, V1 x samples)", f"shape {data.shape}")
    if not np.isfinite(data).all():
        raise DataFileError(path, None, "finite strain", f"{int((~np.isfinite(data)).sum())} NaN/inf values")
    return data


def iter_samples(
    root: str | Path, ids: Iterable[str], split: str = "train", shape: tuple[int, int] = SAMPLE_SHAPE
) -> Iterable[np.ndarray]:
    for sample_id in ids:
        yield read_sample(sample_path(root, sample_id, split), shape)


def pack_cache(
    root: str | Path,
    cache_path: str | Path,
    side_csv: str | Path | None = None,
    snr_column: str = "snr_network",
    shape: tuple[int, int] = SAMPLE_SHAPE,
    chunk: int = 256,
    progress: bool = True,
) -> Path:
    """Read every labelled sample once and write `strain` (N, 3, n) float32, `id`, `target`, `snr`."""
    ids, targets = read_labels(root)
    snr = None
    if side_csv is not None and Path(side_csv).is_file():
        snr = read_side_column(side_csv, ids, snr_column)
    cache_path = Path(cache_path)
    with atomic_output(cache_path) as tmp, h5py.File(tmp, "w") as fh, Progress(disable=not progress, transient=True) as bar:
        fh.attrs["version"] = CACHE_VERSION
        fh.attrs["source"] = str(Path(root).resolve())
        fh.create_dataset("id", data=ids.astype("S"))
        fh.create_dataset("target", data=targets)
        if snr is not None:
            fh.create_dataset("snr", data=snr)
        strain = fh.create_dataset(
            "strain", shape=(len(ids), *shape), dtype=np.float32, chunks=(min(chunk, max(len(ids), 1)), *shape)
        )
        task = bar.add_task(f"packing {root}", total=len(ids))
        buffer: list[np.ndarray] = []
        start = 0
        for sample in iter_samples(root, ids, shape=shape):
            buffer.append(sample)
            if len(buffer) == chunk:
                strain[start : start + chunk] = np.stack(buffer)
                start += chunk
                buffer.clear()
                bar.advance(task, chunk)
        if buffer:
            strain[start : start + len(buffer)] = np.stack(buffer)
    return cache_path


def read_cache(cache_path: str | Path) -> G2NetArrays:
    """Load a packed cache whole (about 49 kB per sample)."""
    path = Path(cache_path)
    if not path.is_file():
        raise DataFileError(path, None, "a packed G2Net HDF5 cache", "no such file")
    with h5py.File(path, "r") as fh:
        for key in ("id", "target", "strain"):
            if key not in fh:
                raise DataFileError(path, key, "datasets id, target, strain", f"keys {sorted(fh.keys())}")
        strain = fh["strain"][...]
        ids = fh["id"][...].astype(str)
        target = fh["target"][...].astype(np.int8)
        snr = fh["snr"][...] if "snr" in fh else None
    if strain.ndim != 3 or strain.shape[0] != len(ids) or len(target) != len(ids):
        raise DataFileError(path, "strain", f"(N={len(ids)}, 3, n_samples)", f"shape {strain.shape}")
    return G2NetArrays(ids=ids, strain=strain, target=target, snr=snr)
