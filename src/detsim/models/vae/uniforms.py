"""The per-voxel uniforms of generation: one numpy PCG64 stream per block of rows, filled on parallel threads.

Why: torch's CPU generator (mt19937) fills one tensor serially at ~4 ns per number; for a batch of 10,000
dataset-1 showers (3.7M uniforms) that took as long as the decoder's whole matmul chain
(docs/studies/2026-11-30-generation-speed.md). numpy's PCG64 fills at ~2.7 ns per number and, split into
independent streams per block of `ROWS_PER_STREAM` rows, on every torch thread at once.

The stream ("pcg64") is a function of the torch generator alone: one 63-bit key is drawn from it (after
the latent draws), and block i of the rows takes `SeedSequence(key, spawn_key=(i,))`. The blocks are fixed
row ranges, so the numbers do not depend on the number of threads, and they are drawn on the host, so a
seed gives the same uniforms on every device. "torch" is the stream of detsim before this change (torch.rand
on the generator itself): a file generated then is reproduced with `random_stream=torch`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from detsim.errors import ConfigError

RANDOM_STREAMS = ("pcg64", "torch")
# part of the stream's definition, not a tuning knob (another value gives other numbers), hence not in conf/
ROWS_PER_STREAM = 1024
_KEY_HIGH = 2**63 - 1
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def check_stream(stream: str) -> str:
    """`stream` if it names a stream, else the one-line user error (exit 2 from the CLIs)."""
    if stream not in RANDOM_STREAMS:
        raise ConfigError(f"generate.random_stream: expected one of {RANDOM_STREAMS}, found {stream!r}")
    return stream


def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per process and width (numpy's fills release the GIL, so the threads run in
    parallel); per process because a forked child (a DataLoader worker) inherits the pool but not its threads."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="detsim-uniforms")
    return _pools[key]


@torch.compiler.disable  # host-side numpy: torch.compile runs it as it is and compiles what follows
def draw_uniforms(n: int, width: int, generator: torch.Generator | None, stream: str = "pcg64",
                  device: torch.device | str = "cpu", out: torch.Tensor | None = None) -> torch.Tensor:
    """(n, width) float32 uniforms in [0, 1) from `stream`, advancing `generator`; written into `out` if given
    (a contiguous float32 CPU tensor of that shape, e.g. the showers buffer the sampler then works in)."""
    if check_stream(stream) == "torch":
        if out is not None:
            return torch.rand((n, width), generator=generator, out=out)
        return torch.rand(n, width, generator=generator, device=device)
    key = int(torch.randint(_KEY_HIGH, (1,), generator=generator,
                            device=generator.device if generator is not None else "cpu").item())
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
