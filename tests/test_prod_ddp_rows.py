"""DDP splits the streamed rows: 2 gloo processes x 2 DataLoader workers each read a disjoint share, together
every row exactly once per epoch, with the same number of batches per rank (DDP hangs otherwise)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detsim.data.datasets import EpochLoader, StreamingShowerDataset, rank_share
from detsim.io import write_showers
from detsim.showers import CaloShowers

N_ROWS, WORLD = 1000, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, path: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        dataset = StreamingShowerDataset(path, [(0, N_ROWS)], batch_size=64, chunk_size=100, shuffle=True,
                                         shuffle_buffer=128, seed=3, num_workers=2)
        loader = EpochLoader(dataset, batch_size=None, num_workers=2)
        for epoch in range(2):
            batches = list(loader)
            rows = torch.cat([b["incident_energy"] for b in batches]).numpy()
            np.save(Path(out) / f"rank{rank}_epoch{epoch}.npy", rows)
            np.save(Path(out) / f"rank{rank}_epoch{epoch}_n.npy", np.array([len(batches), len(loader)]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_with_two_workers_read_every_row_once(tmp_path):
    path = tmp_path / "rows.h5"
    energies = np.arange(1, N_ROWS + 1, dtype=np.float64) * 1000.0  # the row id, as an energy in MeV
    write_showers(path, CaloShowers(energies, np.ones((N_ROWS, 368))))
    mp.start_processes(_rank, args=(_free_port(), str(path), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    for epoch in range(2):
        seen = [np.load(tmp_path / f"rank{r}_epoch{epoch}.npy") for r in range(WORLD)]
        assert len(seen[0]) == len(seen[1]) == N_ROWS // WORLD
        assert not set(seen[0]) & set(seen[1])
        assert sorted(np.concatenate(seen)) == sorted(energies.astype(np.float32))
        counts = [np.load(tmp_path / f"rank{r}_epoch{epoch}_n.npy") for r in range(WORLD)]
        assert counts[0][0] == counts[1][0] == counts[0][1]  # batches run == len(loader), equal on both ranks
    first = np.load(tmp_path / "rank0_epoch0.npy")
    assert not np.array_equal(first, np.load(tmp_path / "rank0_epoch1.npy"))  # a new shuffle each epoch


@pytest.mark.parametrize("total", [10, 11, 13])
def test_rank_shares_are_equal_and_cover_every_row(total):
    pieces = [(0, 4), (20, 20 + total - 4)]
    shares = [rank_share(pieces, r, 3) for r in range(3)]
    rows = [np.concatenate([np.arange(a, b) for a, b in share]) for share in shares]
    assert len({len(r) for r in rows}) == 1
    assert set(np.concatenate(rows)) == set(np.concatenate([np.arange(a, b) for a, b in pieces]))
    assert sum(map(len, rows)) - total == -total % 3  # only the padding is read twice
