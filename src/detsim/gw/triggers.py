"""Search triggers: clustering in time and the trigger file (MLGWSC-1's event file, with pycbc's slide names).

Trigger file (HDF5), one row per clustered trigger: `time` (GPS s, in the first detector's frame), `stat` (the
ranking statistic: larger is more signal-like), `var` (s: how far from an injection's `tc` the trigger may lie and
still find it, MLGWSC-1's name), `timeslide_id` (0 = zero lag, k = the other detectors shifted by k x `slide`), and
for the template bank `template_id` (row of the group `bank`, which holds the bank's `mass1`, `mass2`, `spin1z`,
`spin2z` and is itself a valid `bank_file`). `livetime` (s) is the time analysed per timeslide_id; `analysed_start`
and `analysed_end` (GPS s) are the spans of zero-lag trigger times covered, block by block. Root attributes record
the search (`method`, `detectors`, `slide`, `n_slides`, `cluster_window`, the data files and whether they held
injections). Rows are appended block by block, so memory does not grow with the duration searched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
from scipy.ndimage import maximum_filter1d

from detsim.errors import DataFileError
from detsim.gw.strain import set_attrs

COLUMNS = {"time": np.float64, "stat": np.float64, "var": np.float32, "timeslide_id": np.int32}


def cluster_peaks(stat: np.ndarray, half_width: int) -> np.ndarray:
    """Indices of the samples of a regular series that are the loudest within +-half_width samples (the earliest of
    equal maxima); -inf marks samples not analysed. pycbc's `findchirp_cluster_over_window`, on a grid."""
    stat = np.asarray(stat, dtype=np.float64)
    if half_width < 1 or len(stat) == 0:
        return np.flatnonzero(np.isfinite(stat))
    around = maximum_filter1d(stat, size=2 * half_width + 1, mode="constant", cval=-np.inf)
    # max over the half_width samples before each one: a trailing window ending one sample earlier
    trailing = maximum_filter1d(stat, size=half_width, mode="constant", cval=-np.inf, origin=(half_width - 1) // 2)
    before = np.concatenate([[-np.inf], trailing[:-1]])
    return np.flatnonzero(np.isfinite(stat) & (stat >= around) & (stat > before))


class TriggerWriter:
    """Appends triggers to an open HDF5 file (resizable datasets), then writes livetimes, spans and attributes."""

    def __init__(self, path: Path, n_slides: int, bank: Mapping[str, np.ndarray] | None = None) -> None:
        self.handle = h5py.File(path, "w")
        columns = dict(COLUMNS, **({"template_id": np.int32} if bank is not None else {}))
        self.sets = {name: self.handle.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(65536,))
                     for name, dtype in columns.items()}
        self.livetime = np.zeros(n_slides + 1)
        self.spans: list[tuple[float, float]] = []
        if bank is not None:
            group = self.handle.create_group("bank")
            for key, values in bank.items():
                group.create_dataset(key, data=np.asarray(values))

    def append(self, rows: Mapping[str, np.ndarray]) -> None:
        n = len(rows["time"])
        if n == 0:
            return
        for name, ds in self.sets.items():
            ds.resize((ds.shape[0] + n,))
            ds[-n:] = np.asarray(rows[name], dtype=ds.dtype)

    def close(self, attrs: Mapping[str, Any]) -> None:
        self.handle.create_dataset("livetime", data=self.livetime)
        spans = np.array(self.spans, dtype=np.float64).reshape(-1, 2)
        self.handle.create_dataset("analysed_start", data=spans[:, 0])
        self.handle.create_dataset("analysed_end", data=spans[:, 1])
        set_attrs(self.handle, attrs)
        self.handle.close()


def read_triggers(paths: Sequence[Path]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Trigger files (the shards of one search) concatenated; livetimes summed per timeslide_id; the attributes of
    the first file, with `n_injections` summed. Files of different searches or slides are an error."""
    rows: dict[str, list[np.ndarray]] = {}
    livetime: np.ndarray | None = None
    starts, ends = [], []
    attrs: dict[str, Any] = {}
    for path in paths:
        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise DataFileError(path, None, "an HDF5 trigger file (detsim-search)", f"unreadable ({exc})") from None
        with handle:
            missing = [k for k in (*COLUMNS, "livetime") if k not in handle]
            if missing:
                raise DataFileError(path, missing[0], "a trigger file of detsim-search (time, stat, var, timeslide_id, livetime)", "none")
            these = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}
            if attrs:
                for key in ("method", "slide", "n_slides", "cluster_window"):
                    if str(these.get(key)) != str(attrs.get(key)):
                        raise DataFileError(path, key, f"{attrs.get(key)} like the other trigger files", str(these.get(key)))
                attrs["n_injections"] = int(attrs.get("n_injections", 0)) + int(these.get("n_injections", 0))
            else:
                attrs = these
            for name in ("time", "stat", "var", "timeslide_id", *(["template_id"] if "template_id" in handle else [])):
                rows.setdefault(name, []).append(handle[name][()])
            lt = handle["livetime"][()]
            livetime = lt if livetime is None else livetime + lt
            starts.append(handle["analysed_start"][()])
            ends.append(handle["analysed_end"][()])
    table = {k: np.concatenate(v) for k, v in rows.items()}
    table["livetime"] = livetime if livetime is not None else np.zeros(1)
    table["analysed_start"], table["analysed_end"] = np.concatenate(starts), np.concatenate(ends)
    return table, attrs
