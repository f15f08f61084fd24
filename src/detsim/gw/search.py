"""Searches over continuous strain (MLGWSC-1 layout): a trained CNN slid over the whitened data, and the template-bank
matched filter; both write clustered triggers (`detsim.gw.triggers`) for zero lag and for time slides.

The data are cut into analysis *blocks* (`block_duration`, equal parts of each segment): the unit of work, of
memory and of sharding (shard k of n takes a contiguous share of the blocks, for SLURM arrays). Each block is
whitened with a PSD estimated from its own data (median-averaged Welch, `psd_segment` long Tukey-windowed
segments), never the true one, so a search sees what it would see in real data.

Time slides (the background): in slide k detector j (j >= 1 in the data's order) is read k x j x `slide` seconds
later than the first detector, wrapping round inside the block, as pycbc wraps slides round its analysis segments.
`check_slides` refuses any slide that brings a detector within a window plus the light travel time plus the
clustering window of its own zero-lag position (modulo the block), and any two slides that coincide, so no
injection is ever coincident with itself in the background. The background file of `gw_stream` (the same noise
without injections) gives a background with no signal in it at all.

`CNNSearch`: windows of `window` s start every `stride` s; each detector's window is whitened as `Whitener` does
for training (Tukey window, division by the PSD, band-pass gain, resampling to `output_rate`, unit variance per
detector over the block), once per block, then the network scores the windows of every slide in batches on the
device (GPU when present). A window's trigger time is its start plus `merger_offset` (the middle of the merger
window the network was trained on). Detectors of the network's input that the data lack are zeros.

`BankSearch`: per chunk (`chunk_duration` with `pad` s on either side, longer than the longest template) and
template, the complex SNR of each detector (`matched_filter._snr_squared`: |z|^2 ~ chi^2_2 in noise), max-pooled over
+-`coincidence`, then maximised over bins of `bin_lags` lags; the network statistic of a bin is the sum over
detectors (slid for the background), maximised over the bank; the trigger statistic is its square root (network
SNR). Bins make the coincidence window `coincidence` to `coincidence` + one bin (8 ms by default).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy import signal

from detsim import extras
from detsim.errors import ConfigError, DataFileError
from detsim.files import atomic_output
from detsim.gw.cnn import symmetric_logits
from detsim.gw.strain import Segment, StrainReader, expand_paths, file_attrs, strain_segments
from detsim.gw.triggers import TriggerWriter, cluster_peaks
from detsim.gw.whiten import Whitener
from detsim.security import load_checkpoint

if TYPE_CHECKING:  # the bank search builds on this module's blocks; the driver takes either search
    from detsim.gw.bank_search import BankSearch

CNN_CHANNELS = ("H1", "L1", "V1")    # the input order of detsim's GW networks


@dataclass(frozen=True)
class Block:
    """Samples [start, stop) of a segment: the window starts (CNN) or merger times (bank) this block owns."""

    segment: Segment
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def time(self, sample: np.ndarray | float) -> np.ndarray | float:
        return self.segment.start_time + np.asarray(sample, dtype=np.float64) * self.segment.delta_t


def samples(seconds: float, rate: float, key: str) -> int:
    """`seconds` as a whole number of samples at `rate`, or a ConfigError naming the key."""
    n = seconds * rate
    if n <= 0 or abs(n - round(n)) > 1e-6:
        raise ConfigError(f"{key}: expected a positive multiple of {1 / rate:g} s, found {seconds}")
    return int(round(n))


def analysis_blocks(segments: Sequence[Segment], block_duration: float, quantum: int) -> list[Block]:
    """Each segment cut into equal blocks of about `block_duration`, edges on multiples of `quantum` samples."""
    blocks = []
    for seg in segments:
        quanta = seg.n_samples // quantum
        per_block = max(int(round(block_duration * seg.sample_rate / quantum)), 1)
        edges = np.round(np.linspace(0, quanta, max(math.ceil(quanta / per_block), 1) + 1)).astype(int) * quantum
        blocks += [Block(seg, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return blocks


def shard_blocks(blocks: Sequence[Block], shard: int | None, n_shards: int | None) -> list[Block]:
    """Shard `shard` of `n_shards`: a contiguous share of the blocks (all of them without sharding)."""
    if shard is None:
        return list(blocks)
    if n_shards is None or not 0 <= shard < n_shards:
        raise ConfigError(f"shard: expected 0 <= shard < n_shards, found shard={shard}, n_shards={n_shards}")
    edges = np.round(np.linspace(0, len(blocks), n_shards + 1)).astype(int)
    return list(blocks[edges[shard] : edges[shard + 1]])


def light_travel_time(detectors: Sequence[str]) -> float:
    """The largest light travel time (s) between any two of the detectors (pycbc.detector)."""
    site = extras.pycbc().detector.Detector
    return max([site(a).light_travel_time_to_detector(site(b)) for a in detectors for b in detectors], default=0.0)


def check_slides(n_slides: int, slide: float, block_lengths: Sequence[float], n_detectors: int, separation: float) -> None:
    """Refuse time slides under which a detector would come within `separation` s of its own zero-lag position
    (modulo a block: slides wrap round). Two slides k1 < k2 that coincide would need slide k2 - k1 at zero shift, so
    this also keeps every slide's background distinct."""
    if n_slides == 0:
        return
    if n_detectors < 2:
        raise ConfigError(f"n_slides={n_slides}: time slides need at least two detectors")
    if not slide > 0:
        raise ConfigError(f"slide: expected a positive number of seconds for n_slides={n_slides}, found {slide}")
    for length in sorted({round(x, 6) for x in block_lengths}):
        for k in range(1, n_slides + 1):
            for shift in (round((k * j * slide) % length, 6) for j in range(1, n_detectors)):
                if min(shift, length - shift) < separation:
                    raise ConfigError(
                        f"slide: slide {k} shifts a detector by {k * slide:g} s, {min(shift, length - shift):g} s from "
                        f"zero modulo the {length:g}-s analysis block, within {separation:g} s (window + light travel "
                        f"time + cluster window): an injection would stay coincident with itself; use fewer slides, "
                        f"another slide or a longer block_duration")


def slide_positions(positions: np.ndarray, shift: int, block: Block) -> np.ndarray:
    """Sample positions read `shift` samples later, wrapped round inside the block (unchanged for zero lag)."""
    if shift == 0:
        return positions
    return block.start + (positions - block.start + shift) % block.length


def welch_psd(data: np.ndarray, sample_rate: float, segment: int, tukey_alpha: float) -> np.ndarray:
    """(n_det, segment // 2 + 1) one-sided PSD of each detector's strain: median over non-overlapping Tukey-windowed
    segments (bias-corrected by scipy), robust to the injections in the stretch."""
    if data.shape[-1] < segment:
        raise ConfigError(f"psd: a block of {data.shape[-1]} samples is shorter than one {segment}-sample Welch segment")
    _, psd = signal.welch(data, fs=sample_rate, window=("tukey", tukey_alpha), nperseg=segment, noverlap=0,
                          detrend=False, scaling="density", average="median", axis=-1)
    return psd


def psd_on_grid(psd: np.ndarray, sample_rate: float, n: int) -> np.ndarray:
    """A PSD given on the rfft grid of (psd.shape[-1] - 1) * 2 samples, interpolated onto the grid of n samples."""
    f_from = np.fft.rfftfreq(2 * (psd.shape[-1] - 1), 1.0 / sample_rate)
    f_to = np.fft.rfftfreq(n, 1.0 / sample_rate)
    return np.stack([np.interp(f_to, f_from, p) for p in psd])


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA device here; use device=cpu or auto")
    return torch.device(device)


@dataclass
class BlockResult:
    """Clustered triggers of one block for every slide, the time analysed per slide and the zero-lag span."""

    rows: dict[str, np.ndarray]
    livetime: np.ndarray
    span: tuple[float, float] | None


def cluster_block_peaks(stat: np.ndarray, owned: np.ndarray, half_width: int) -> np.ndarray:
    peaks = cluster_peaks(stat, half_width)
    return peaks[owned[peaks]]


# -- the CNN search ---------------------------------------------------------------------------------------------

class TorchWhitening:
    """`Whitener.__call__` for windows of one detector, in torch on the search's device (float64 FFTs)."""

    def __init__(self, whitener: Whitener, n: int, device: torch.device) -> None:
        self.n, self.n_out = n, whitener.output_length(n)
        w = whitener.window(n)
        norm = np.sqrt(whitener.psd * whitener.sample_rate * np.sum(w**2) / 2.0)
        inv = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0)
        gain = whitener.band_gain(n)[: self.n_out // 2 + 1] * (self.n_out / n)
        if self.n_out < n:
            gain[-1] = 0.0
        self.window = torch.as_tensor(w, device=device)
        self.filters = torch.as_tensor(inv[:, : self.n_out // 2 + 1] * gain, device=device)   # (n_det, F_out)

    def __call__(self, windows: torch.Tensor, det: int) -> torch.Tensor:
        spectrum = torch.fft.rfft(windows * self.window, dim=-1)[..., : self.n_out // 2 + 1] * self.filters[det]
        return torch.fft.irfft(spectrum, n=self.n_out, dim=-1).float()


@dataclass
class CNNSearch:
    """A GW network (whitened (B, 3, n_out) -> logits) slid over the data."""

    net: torch.nn.Module
    whitening: Mapping[str, Any] = field(default_factory=dict)   # Whitener settings (conf/gw/preprocessing)
    window: float = 2.0
    merger_offset: float = 1.4
    stride: float = 0.25
    batch: int = 256
    var: float = 0.5
    symmetric: bool = False
    psd_segment: float | None = None       # None: the window (the PSD on the grid the network was trained with)
    scale_windows: int = 512

    method = "cnn"

    def bank_columns(self) -> None:
        """No template columns: a CNN trigger has no template."""
        return None

    def quantum(self, rate: float) -> int:
        return samples(self.stride, rate, "cnn.stride")

    def separation(self) -> float:
        return self.window

    def prepare(self, first_block: Block, reader: StrainReader, detectors: Sequence[str], device: torch.device) -> None:
        self.net = self.net.to(device).eval()
        mask = getattr(self.net, "input_mask", None)
        read = [d for c, d in enumerate(CNN_CHANNELS) if d not in detectors and (mask is None or float(mask[c]) != 0)]
        if read:
            print(f"warning: the network reads {', '.join(read)}, which the data lack: zeros go there (a network for "
                  f"these detectors is trained with model.net.input_mask, e.g. [1,1,0] for H1 and L1)", file=sys.stderr)

    def attrs(self) -> dict[str, Any]:
        return {"window": self.window, "merger_offset": self.merger_offset, "stride": self.stride,
                "symmetric": self.symmetric}

    def run_block(self, block: Block, reader: StrainReader, detectors: Sequence[str], shifts: np.ndarray,
                  cluster_window: float, device: torch.device) -> BlockResult:
        seg, fs = block.segment, block.segment.sample_rate
        n_win, step = samples(self.window, fs, "cnn.window"), self.quantum(fs)
        margin = int(math.ceil(cluster_window / 2 / self.stride))
        grid = block.start + step * np.arange(-margin, block.length // step + margin)
        lo, hi = max(block.start - margin * step, 0), min(block.stop + margin * step + n_win, seg.n_samples)
        data = np.stack([reader.read(seg, det, lo, hi) for det in detectors])
        whitener = Whitener(sample_rate=fs, **{k: v for k, v in self.whitening.items() if k not in ("_target_", "sample_rate")})
        psd_n = samples(self.psd_segment, fs, "cnn.psd_segment") if self.psd_segment else n_win
        psd = welch_psd(data[:, block.start - lo : block.stop - lo], fs, psd_n, whitener.tukey_alpha)
        whitener.psd = psd if psd_n == n_win else psd_on_grid(psd, fs, n_win)
        torch_white = TorchWhitening(whitener, n_win, device)
        valid = (grid >= lo) & (grid + n_win <= hi)
        rows = np.clip((grid - lo) // step, 0, None)
        strain = torch.as_tensor(data, device=device)
        white = []
        for j in range(len(detectors)):
            windows = strain[j].unfold(0, n_win, step)                       # row r: samples lo + r step ...
            out = torch.zeros((len(grid), torch_white.n_out), dtype=torch.float32, device=device)
            idx = np.flatnonzero(valid)
            for s in range(0, len(idx), self.batch):
                part = idx[s : s + self.batch]
                out[part] = torch_white(windows[torch.as_tensor(rows[part], device=device)], j)
            if whitener.per_detector_scale and len(idx):
                pick = idx[np.linspace(0, len(idx) - 1, min(len(idx), self.scale_windows)).astype(int)]
                out /= out[torch.as_tensor(pick, device=device)].std()
            white.append(out)
        owned = (grid >= block.start) & (grid < block.stop)
        covered, livetime, out_rows = np.zeros(0, dtype=np.int64), np.zeros(len(shifts)), []
        half = int(round(cluster_window / 2 / self.stride))
        channel = {det: j for j, det in enumerate(detectors)}
        for k, shift in enumerate(shifts):
            index = [np.arange(len(grid))]
            ok = valid.copy()
            for j in range(1, len(detectors)):
                moved = slide_positions(grid, int(shift[j]), block)
                pos = (moved - grid[0]) // step
                index.append(pos)
                ok &= valid[pos]
            stat = np.full(len(grid), -np.inf)
            todo = np.flatnonzero(ok)
            with torch.inference_mode():
                for s in range(0, len(todo), self.batch):
                    part = todo[s : s + self.batch]
                    x = torch.zeros((len(part), len(CNN_CHANNELS), torch_white.n_out), dtype=torch.float32, device=device)
                    for c, det in enumerate(CNN_CHANNELS):
                        if det in channel:
                            j = channel[det]
                            x[:, c] = white[j][torch.as_tensor(index[j][part], device=device)]
                    logits = self._logits(x)
                    stat[part] = logits.float().cpu().numpy()
            keep = cluster_block_peaks(stat, owned, half)
            livetime[k] = np.count_nonzero(ok & owned) * self.stride
            out_rows.append({"time": block.time(grid[keep]) + self.merger_offset, "stat": stat[keep],
                             "var": np.full(len(keep), self.var), "timeslide_id": np.full(len(keep), k)})
            if k == 0:
                covered = grid[ok & owned]
        span = None if len(covered) == 0 else (float(block.time(covered[0]) + self.merger_offset),
                                               float(block.time(covered[-1]) + self.merger_offset + self.stride))
        return BlockResult({key: np.concatenate([r[key] for r in out_rows]) for key in out_rows[0]}, livetime, span)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return symmetric_logits(self.net, x) if self.symmetric else self.net(x)


def load_network(net: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Weights from a `detsim-train` checkpoint of a GWClassifier (its `net.` state) or a plain state dict (the G2Net
    study's gw_1dcnn.pt), loaded safely (weights only) into `net`; a mismatch is a DataFileError naming the file."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    if any(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataFileError(path, None, "the weights of the network cnn.net describes", first) from None
    return net


# -- the driver -------------------------------------------------------------------------------------------------

def iter_blocks(search: CNNSearch | BankSearch, data: str | Sequence[str], block_duration: float,
                shard: int | None = None, n_shards: int | None = None) -> tuple[tuple[str, ...], list[Block], list[Path]]:
    paths = expand_paths(data)
    detectors, segments = strain_segments(paths)
    blocks = analysis_blocks(segments, block_duration, search.quantum(segments[0].sample_rate))
    return detectors, shard_blocks(blocks, shard, n_shards), paths


def run_search(search: CNNSearch | BankSearch, data: str | Sequence[str], out: str | Path, n_slides: int = 0,
               slide: float = 7.0, cluster_window: float = 1.0, block_duration: float = 2048.0,
               shard: int | None = None, n_shards: int | None = None, device: str = "auto",
               overwrite: bool = False, progress: bool = True, extra_attrs: Mapping[str, Any] | None = None) -> Path:
    """Search the strain files `data` (a file, glob or list) and write the trigger file `out` (atomically)."""
    detectors, blocks, paths = iter_blocks(search, data, block_duration, shard, n_shards)
    if not blocks:
        raise ConfigError(f"shard {shard}: no analysis block falls to it ({n_shards} shards)")
    fs = blocks[0].segment.sample_rate
    if n_slides < 0:
        raise ConfigError(f"n_slides: expected an integer >= 0, found {n_slides}")
    separation = search.separation() + light_travel_time(detectors) + cluster_window
    check_slides(n_slides, slide, [b.length / fs for b in blocks], len(detectors), separation)
    if n_slides and abs(slide * fs / search.quantum(fs) - round(slide * fs / search.quantum(fs))) > 1e-6:
        raise ConfigError(f"slide: expected a multiple of {search.quantum(fs) / fs:g} s (the {search.method} search's "
                          f"step), found {slide}")
    shifts = np.array([[int(round(k * j * slide * fs)) for j in range(len(detectors))] for k in range(n_slides + 1)])
    dev = pick_device(device)
    data_attrs = [file_attrs(p) for p in paths]
    attrs = {"method": search.method, "detectors": list(detectors), "slide": float(slide), "n_slides": int(n_slides),
             "cluster_window": float(cluster_window), "block_duration": float(block_duration),
             "data": [str(p) for p in paths], "shard": -1 if shard is None else int(shard),
             "n_injections": int(sum(int(a.get("n_injections", 0)) for a in data_attrs)),
             "injection_file": [str(a.get("injection_file", "None")) for a in data_attrs], "sample_rate": fs,
             "device": str(dev), **search.attrs(), **dict(extra_attrs or {})}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    wall, cpu = time.perf_counter(), time.process_time()
    with StrainReader() as reader, atomic_output(out, overwrite) as partial:
        search.prepare(blocks[0], reader, detectors, dev)
        writer = TriggerWriter(partial, n_slides, search.bank_columns())
        try:
            with Progress(*columns, disable=not progress) as bar:
                task = bar.add_task(f"{search.method} search, {n_slides + 1} slide(s) -> {out}", total=len(blocks))
                for block in blocks:
                    result = search.run_block(block, reader, detectors, shifts, cluster_window, dev)
                    writer.append(result.rows)
                    writer.livetime += result.livetime
                    if result.span is not None:
                        writer.spans.append(result.span)
                    bar.advance(task)
        except BaseException:
            writer.handle.close()
            raise
        writer.close({**attrs, **search.attrs(), "wall_seconds": time.perf_counter() - wall,
                      "cpu_seconds": time.process_time() - cpu})
    return Path(out)
