"""The per-voxel uniforms of generation: one numpy PCG64 stream per block of rows, filled on parallel threads.

Why: torch's CPU generator (mt19937) fills one tensor serially at ~4 ns per number; for a batch of 10,000
dataset-1 showers (3.7M uniforms) that took as long as the decoder's whole matmul chain
(docs/studies/2026-11-30-generation-speed.md). numpy's PCG64 fills at ~2.7 ns per number and, split into
independent streams per block of `ROWS_PER_STREAM` rows, on every torch thread at once.

The stream is a function of the torch.Generator alone: one 63-bit key is drawn from it (after the latent
draws), and block i of the rows takes `SeedSequence(key, spawn_key=(i,))`. The blocks are fixed row ranges,
so the numbers do not depend on the number of threads, and they are drawn on the host, so a seed gives the
same uniforms on every device.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# part of the stream's definition, not a tuning knob (another value gives other numbers), hence not in conf/
ROWS_PER_STREAM = 1024
_KEY_HIGH = 2**63 - 1
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per process and width (numpy's fills release the GIL, so the threads run in
    parallel); per process because a forked child (a DataLoader worker) inherits the pool but not its threads."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="detsim-uniforms")
    return _pools[key]


def draw_uniforms(n: int, width: int, rng: torch.Generator | None, device: torch.device | str = "cpu",
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """(n, width) float32 uniforms in [0, 1), advancing `rng` by one draw; written into `out` if given (a
    contiguous float32 CPU tensor of that shape, e.g. the showers buffer the sampler then works in)."""
    key = int(torch.randint(_KEY_HIGH, (1,), generator=rng, device=rng.device if rng is not None else "cpu").item())
    host = out if out is not None else torch.empty(n, width, dtype=torch.float32)
    rows = host.numpy()

    def fill(block: int) -> None:
        bits = np.random.PCG64(np.random.SeedSequence(key, spawn_key=(block,)))
        np.random.Generator(bits).random(dtype=np.float32, out=rows[block * ROWS_PER_STREAM : (block + 1) * ROWS_PER_STREAM])

    blocks = range(-(-n // ROWS_PER_STREAM))
    workers = min(torch.get_num_threads(), len(blocks))
    if workers > 1:
        list(_pool(workers).map(fill, blocks))
    else:
        for block in blocks:
            fill(block)
    return host if out is not None else host.to(device)
