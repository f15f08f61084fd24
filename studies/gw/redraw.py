"""Re-drawn training sets for `--redraw N`: every N epochs the network trains on new samples of the same priors
and binaries (`Bundle.redrawn`), re-drawn and whitened by a pool of processes while it trains on the current set.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np

from studies.gw.samples import Bundle, rebuild_sample

_SHARED: dict[str, Any] = {}   # what the forked processes inherit: the bundle, the whitener, the closing event


def _redraw_block(job: tuple[int, int, int, int]) -> np.ndarray | None:
    """Whitened strain of training rows [start, stop) of re-draw `draw` (runs in a `Redrawer` process); None once
    the Redrawer closes, so a re-draw nobody will use drains in moments."""
    draw, n, start, stop = job
    if _SHARED["closing"].is_set():
        return None
    if _SHARED.get("draw") != draw:   # the permutation is cheap; keep one per process and draw
        _SHARED["draw"], _SHARED["redrawn"] = draw, _SHARED["bundle"].redrawn(n, draw)
    strain = np.stack([rebuild_sample(_SHARED["redrawn"], "train", i)[0] for i in range(start, stop)])
    return _SHARED["whitener"](strain)


class Redrawer:
    """`--redraw N`: the training set of epoch e (e = N, 2N, ...) is re-drawn (`Bundle.redrawn`) and whitened by a
    pool of processes while the network trains on the previous one, so a GPU does not wait for the CPU.

    The pool is forked once, before CUDA starts (a forked process must not inherit a CUDA context), with the
    bundle and the fitted whitener; each call returns the set of its epoch and queues the next one. `close` lets
    the queued re-draw drain and joins the pool: `Pool.terminate` with tasks in flight can deadlock (seen in the
    test suite: its task-feeding thread blocked on the queue's lock while the pool joined it)."""

    def __init__(self, bundle: Bundle, n: int, whitener: Any, every: int, workers: int, block: int = 64) -> None:
        context = mp.get_context("fork")
        self.closing = context.Event()
        _SHARED.update(bundle=bundle, whitener=whitener, draw=None, closing=self.closing)
        self.n, self.every, self.block = n, every, block
        self.pool = context.Pool(max(1, workers))
        self.pending: dict[int, Any] = {}
        self.waited, self.draws = 0.0, 0
        self.submit(every)

    def submit(self, epoch: int) -> None:
        jobs = [(epoch, self.n, s, min(s + self.block, self.n)) for s in range(0, self.n, self.block)]
        self.pending[epoch] = self.pool.map_async(_redraw_block, jobs)

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch not in self.pending:
            self.submit(epoch)
        t0 = time.perf_counter()
        blocks = self.pending.pop(epoch).get()
        self.waited += time.perf_counter() - t0
        self.draws += 1
        self.submit(epoch + self.every)
        return np.concatenate(blocks)

    def close(self, drain_seconds: float = 120.0) -> None:
        self.closing.set()
        for result in self.pending.values():
            result.wait(drain_seconds)
        self.pool.close()
        if all(result.ready() for result in self.pending.values()):
            self.pool.join()
        else:   # a worker is stuck: leave it to the pool's finaliser rather than block the run's report
            self.pool.terminate()
