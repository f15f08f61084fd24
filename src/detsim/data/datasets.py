"""Torch datasets over shower files: seeded block splits, a streaming path and an in-memory path.

Both paths yield whole batches, `{"incident_energy": (B,), "showers": (B, n_voxels)}` float32 MeV, so
no per-row Python runs in the training loop; their DataLoaders use `batch_size=None` (streaming) or
a pass-through collate (in memory).

Splits assign contiguous blocks of rows (not single rows) to train/val/test by a seeded permutation:
a streaming split then reads a few long row ranges instead of the whole file, and both paths see the
same rows for the same seed.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from detsim.errors import ConfigError
from detsim.io import iter_showers
from detsim.io.validation import ValidationRules
from detsim.showers import CaloShowers

Batch = dict[str, torch.Tensor]
Ranges = list[tuple[int, int]]

# At least this many blocks per file, so that split fractions hold to about 1% even for tiny files.
MIN_BLOCKS = 100


def split_ranges(
    n_rows: int, fractions: Mapping[str, float], seed: int, block: int = 1000
) -> dict[str, Ranges]:
    """Row ranges [start, stop) of each split: seeded, disjoint, together covering sum(fractions) of the rows."""
    values = {name: float(f) for name, f in fractions.items()}
    if any(f < 0 for f in values.values()) or not 0 < sum(values.values()) <= 1 + 1e-9:
        raise ConfigError(f"split fractions must be >= 0 and sum to at most 1, got {values}")
    if n_rows < 1:
        raise ConfigError(f"cannot split {n_rows} rows")
    block = max(1, min(int(block), n_rows // MIN_BLOCKS))
    n_blocks = math.ceil(n_rows / block)
    order = np.random.default_rng(seed).permutation(n_blocks)
    bounds = np.floor(np.cumsum([0.0, *values.values()]) * n_blocks + 0.5).astype(int)
    bounds = np.minimum(bounds, n_blocks)
    out: dict[str, Ranges] = {}
    for (name, _), lo, hi in zip(values.items(), bounds[:-1], bounds[1:]):
        out[name] = _merge_blocks(np.sort(order[lo:hi]), block, n_rows)
    return out


def _merge_blocks(blocks: np.ndarray, block: int, n_rows: int) -> Ranges:
    """Sorted block ids -> maximal contiguous row ranges."""
    ranges: Ranges = []
    for b in blocks.tolist():
        start, stop = b * block, min((b + 1) * block, n_rows)
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    return ranges


def range_rows(ranges: Ranges) -> np.ndarray:
    """All row indices of a list of ranges, in order."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b) for a, b in ranges])


def _pieces(ranges: Ranges, size: int) -> Ranges:
    """Cut ranges into pieces of at most `size` rows: the unit a streaming epoch shuffles."""
    return [(a, min(a + size, stop)) for start, stop in ranges for a in range(start, stop, size)]


def _shard(pieces: Ranges, worker: int, n_workers: int) -> Ranges:
    """Worker `worker`'s equal share of the rows of `pieces` (in their order), so workers never overlap."""
    total = sum(b - a for a, b in pieces)
    lo, hi = total * worker // n_workers, total * (worker + 1) // n_workers
    out: Ranges = []
    offset = 0
    for a, b in pieces:
        s, e = max(a, a + lo - offset), min(b, a + hi - offset)
        if s < e:
            out.append((s, e))
        offset += b - a
    return out


def _rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the DDP process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_share(pieces: Ranges, rank: int, world: int) -> Ranges:
    """Rank `rank`'s contiguous share of the rows of `pieces`: ceil(total / world) rows for every rank.

    Every rank must run the same number of batches (DDP's gradient all-reduce hangs otherwise), so when the
    rows do not divide evenly the last ranks wrap round to the first rows: at most world - 1 rows are seen
    twice per epoch, as with torch's DistributedSampler; every row is seen at least once.
    """
    if world == 1:
        return list(pieces)
    total = sum(b - a for a, b in pieces)
    pad = -(-total // world) * world - total
    return _shard(list(pieces) + _head(pieces, pad), rank, world)


def _head(pieces: Ranges, n: int) -> Ranges:
    """The first `n` rows of `pieces`, as ranges."""
    out: Ranges = []
    for a, b in pieces:
        if n <= 0:
            break
        out.append((a, min(b, a + n)))
        n -= out[-1][1] - a
    return out


class EpochLoader(DataLoader):
    """A DataLoader that tells its dataset which epoch starts, so every DDP rank shuffles the same way.

    The streaming dataset's permutation must be identical on all ranks (each then takes its own share);
    a counter bumped here, in the main process, reaches the (non-persistent) workers with the dataset copy.
    """

    def __iter__(self):  # noqa: ANN204 - DataLoader's own iterator type
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch += 1
            self.dataset.rank_world = _rank_and_world()  # worker processes have no process group of their own
        return super().__iter__()


def _to_batch(energy: np.ndarray, showers: np.ndarray) -> Batch:
    return {"incident_energy": torch.from_numpy(np.ascontiguousarray(energy)),
            "showers": torch.from_numpy(np.ascontiguousarray(showers))}


class StreamingShowerDataset(IterableDataset):
    """Stream one split of a shower file in batches, reading `chunk_size` rows at a time.

    Shuffling (train) permutes the split's pieces each epoch and mixes rows in a buffer of
    `shuffle_buffer` rows. Under DDP each rank takes a disjoint share of the rows (`rank_share`), and each
    DataLoader worker a disjoint, equal share of its rank's rows: one epoch reads every row once.
    The epoch's randomness comes from torch's generator (seeded by Lightning's `seed_everything`)
    combined with `seed`, so the same seeds give the same batches.
    """

    def __init__(
        self,
        path: str,
        ranges: Ranges,
        batch_size: int,
        n_voxels: int | None = None,
        rules: ValidationRules = ValidationRules(),
        root_layout: Any = None,
        chunk_size: int = 10_000,
        shuffle: bool = False,
        shuffle_buffer: int = 20_000,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        self.path = path if isinstance(path, tuple) else str(path)  # a tuple: shards read as one set
        self.ranges, self.batch_size = list(ranges), int(batch_size)
        self.n_voxels, self.rules, self.root_layout = n_voxels, rules, root_layout
        self.chunk_size, self.shuffle, self.shuffle_buffer = int(chunk_size), shuffle, int(shuffle_buffer)
        self.seed, self.num_workers = int(seed), int(num_workers)
        self.epoch = 0  # bumped by EpochLoader; the shuffle of a DDP run derives from it
        self.rank_world = (0, 1)  # set by EpochLoader in the main process, read in DataLoader workers

    @property
    def n_rows(self) -> int:
        return sum(b - a for a, b in self.ranges)

    def __len__(self) -> int:
        """Batches per epoch of this rank for `num_workers` workers (each ends with its own partial batch)."""
        world = _rank_and_world()[1]
        n, workers = -(-self.n_rows // world), max(1, self.num_workers)
        shares = [n * (w + 1) // workers - n * w // workers for w in range(workers)]
        return sum(math.ceil(share / self.batch_size) for share in shares)

    def _rank_and_world(self) -> tuple[int, int]:
        return _rank_and_world() if get_worker_info() is None else self.rank_world

    def _epoch_rng(self) -> np.random.Generator:
        if self._rank_and_world()[1] > 1:  # identical on every rank: each then reads its own share of one order
            return np.random.default_rng([self.seed, self.epoch])
        info = get_worker_info()
        # All workers of one epoch share base_seed (= info.seed - info.id); a new epoch draws a new one.
        base = info.seed - info.id if info is not None else int(torch.randint(0, 2**62, (1,)).item())
        return np.random.default_rng([self.seed, base % 2**63])

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pieces = _pieces(self.ranges, self.chunk_size)
        rng = self._epoch_rng() if self.shuffle else None
        if rng is not None:
            pieces = [pieces[i] for i in rng.permutation(len(pieces))]
        rank, world = self._rank_and_world()
        chunks = self._read(_shard(rank_share(pieces, rank, world), worker, n_workers))
        yield from (self._shuffled(chunks, rng) if rng is not None else self._batched(chunks))

    def _read(self, ranges: Ranges) -> Iterator[CaloShowers]:
        for start, stop in ranges:
            yield from iter_showers(
                self.path, self.chunk_size, self.n_voxels, self.rules, root=self.root_layout, start=start, stop=stop
            )

    def _batched(self, chunks: Iterator[CaloShowers]) -> Iterator[Batch]:
        pending: list[CaloShowers] = []
        held = 0
        for chunk in chunks:
            pending.append(chunk)
            held += len(chunk)
            if held >= self.batch_size:
                joined = CaloShowers.concatenate(pending)
                cut = held - held % self.batch_size
                for i in range(0, cut, self.batch_size):
                    part = joined[i : i + self.batch_size]
                    yield _to_batch(part.incident_energy, part.showers)
                pending, held = ([joined[cut:]] if cut < held else []), held - cut
        if held:
            last = CaloShowers.concatenate(pending)
            yield _to_batch(last.incident_energy, last.showers)

    def _shuffled(self, chunks: Iterator[CaloShowers], rng: np.random.Generator) -> Iterator[Batch]:
        """Fill a buffer, permute it, emit all but `shuffle_buffer` rows as batches; flush at the end."""
        buffer: list[CaloShowers] = []
        held = 0
        for chunk in chunks:
            buffer.append(chunk)
            held += len(chunk)
            if held >= self.shuffle_buffer + self.batch_size:
                mixed = CaloShowers.concatenate(buffer)[rng.permutation(held)]
                emit = (held - self.shuffle_buffer) // self.batch_size * self.batch_size
                yield from self._batched(iter([mixed[:emit]]))
                buffer, held = [mixed[emit:]], held - emit
        if held:
            yield from self._batched(iter([CaloShowers.concatenate(buffer)[rng.permutation(held)]]))


class InMemoryShowerDataset(Dataset):
    """One split held in memory as two tensors; `__getitems__` returns a whole batch at once."""

    def __init__(self, incident_energy: np.ndarray, showers: np.ndarray) -> None:
        self.incident_energy = torch.from_numpy(np.ascontiguousarray(incident_energy, dtype=np.float32))
        self.showers = torch.from_numpy(np.ascontiguousarray(showers, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.incident_energy.shape[0])

    def __getitem__(self, index: int) -> Batch:
        return {"incident_energy": self.incident_energy[index], "showers": self.showers[index]}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"incident_energy": self.incident_energy[idx], "showers": self.showers[idx]}


def pass_batch(batch: Batch) -> Batch:
    """Collate function for `InMemoryShowerDataset`: its `__getitems__` already built the batch."""
    return batch
