"""The per-voxel uniforms of generation (runtime/uniforms.py): reproducible, thread-count independent,
uniform and independent between row blocks."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from detsim.runtime.uniforms import ROWS_PER_STREAM, draw_uniforms

N = 2 * ROWS_PER_STREAM + 300  # three blocks, the last one partial


def _draw(seed: int, threads: int, n: int = N, width: int = 37) -> torch.Tensor:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return draw_uniforms(n, width, torch.Generator().manual_seed(seed))
    finally:
        torch.set_num_threads(before)


def test_same_seed_same_numbers_whatever_the_thread_count():
    one, two = _draw(5, 1), _draw(5, 2)
    assert one.dtype == torch.float32 and one.shape == (N, 37)
    assert torch.equal(one, two)
    assert not torch.equal(one, _draw(6, 1))


def test_written_into_out_equals_returned():
    out = torch.full((N, 37), -1.0)
    got = draw_uniforms(N, 37, torch.Generator().manual_seed(5), out=out)
    assert got.data_ptr() == out.data_ptr() and torch.equal(out, _draw(5, 1))


def test_each_draw_advances_the_generator():
    rng = torch.Generator().manual_seed(3)
    first, second = draw_uniforms(100, 10, rng), draw_uniforms(100, 10, rng)
    assert not torch.equal(first, second)


def test_uniform_on_unit_interval_and_blocks_independent():
    u = _draw(11, 2, n=3 * ROWS_PER_STREAM, width=64).double().numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    blocks = u.reshape(3, ROWS_PER_STREAM * 64)
    assert not np.array_equal(blocks[0], blocks[1])  # each block its own stream, not a copy
    # no correlation between neighbouring blocks (n = 65k pairs: |r| ~ 0.004 by chance)
    assert abs(np.corrcoef(blocks[0], blocks[1])[0, 1]) < 0.02
    assert abs(np.corrcoef(blocks[1], blocks[2])[0, 1]) < 0.02


FORK_SCRIPT = """
import multiprocessing as mp, torch
from detsim.runtime.uniforms import draw_uniforms

def draw():
    torch.set_num_threads(2)
    return draw_uniforms(3000, 37, torch.Generator().manual_seed(5))

want = draw()  # the parent's thread pool exists now
with mp.get_context("fork").Pool(1) as pool:
    got = pool.apply_async(draw).get(timeout=60)  # a pool without threads would wait forever
print("same" if torch.equal(got, want) else "different")
"""


def test_a_forked_child_draws_the_same_numbers():
    """A forked process (a DataLoader worker) inherits the parent's thread pool object but not its threads.
    Run in a fresh interpreter: forking the multi-threaded test process itself can deadlock on other locks."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "same"
