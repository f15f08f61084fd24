"""Worker processes for the Geant4 backend: hand out seeded blocks, collect results in block order.

Spawned (never forked) processes, one Geant4 each. Each block carries its energies and its Geant4 seed,
both drawn from (run seed, block id) in the parent, so K workers give the showers of one worker.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from detsim.errors import ConfigError
from detsim.sim.calo.runner import block_rng
from detsim.spectra import sample_energies
from detsim.sim.geant4.worker import BlockResult, WorkerSpec, main as worker_main

G4_SEED_MAX = 2**31 - 1


@dataclass(frozen=True)
class BlockTask:
    block: int
    g4_seed: int
    energies: np.ndarray


def block_tasks(
    n: int, seed: int, block_size: int, spectrum: Mapping[str, Any] | None = None, energies: np.ndarray | None = None,
    first_block: int = 0,
) -> list[BlockTask]:
    """The run's blocks: block b (global id first_block + b) draws its Geant4 seed, then its energies."""
    if n < 0 or block_size < 1:
        raise ConfigError(f"keys 'n', 'simulator.block_size': expected n >= 0 and block_size >= 1, found {n}, {block_size}")
    if energies is not None and len(energies) != n:
        raise ConfigError(f"energies: expected {n} values, found {len(energies)}")
    tasks = []
    for b in range(-(-n // block_size)):
        lo, hi = b * block_size, min(n, (b + 1) * block_size)
        rng = block_rng(seed, first_block + b)
        g4_seed = int(rng.integers(1, G4_SEED_MAX))
        e = energies[lo:hi] if energies is not None else sample_energies(spectrum, hi - lo, rng)
        tasks.append(BlockTask(first_block + b, g4_seed, np.asarray(e, dtype=np.float64)))
    return tasks


class Geant4Pool:
    """`with Geant4Pool(spec, k) as pool: for result in pool.run(tasks): ...` (results in task order)."""

    def __init__(self, spec: WorkerSpec, n_workers: int = 1, poll_s: float = 1.0) -> None:
        if n_workers < 1:
            raise ConfigError(f"key 'n_workers': expected >= 1, found {n_workers}")
        self.spec, self.n_workers, self.poll_s = spec, n_workers, poll_s
        self.version: str | None = None
        self._procs: list[Any] = []

    def __enter__(self) -> "Geant4Pool":
        ctx = mp.get_context("spawn")
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        self._procs = [ctx.Process(target=worker_main, args=(self.spec, self._tasks, self._results), daemon=True)
                       for _ in range(self.n_workers)]
        for p in self._procs:
            p.start()
        return self

    def _get(self) -> tuple[str, Any]:
        while True:
            try:
                return self._results.get(timeout=self.poll_s)
            except queue.Empty:
                dead = [p.exitcode for p in self._procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a Geant4 worker died (exit code {dead[0]}); rerun with simulator.verbose=true")

    def run(self, tasks: list[BlockTask]) -> Iterator[BlockResult]:
        for task in tasks:
            self._tasks.put((task.block, task.g4_seed, task.energies))
        for _ in self._procs:
            self._tasks.put(None)
        order = [t.block for t in tasks]
        pending: dict[int, BlockResult] = {}
        position = 0
        while position < len(order):
            kind, payload = self._get()
            if kind == "ready":
                self.version = payload
            elif kind == "user-error":
                raise ConfigError(payload.splitlines()[0].split(": ", 1)[-1])
            elif kind == "error":
                raise RuntimeError(f"Geant4 worker failed: {payload}")
            else:
                pending[payload.block] = payload
                while position < len(order) and order[position] in pending:
                    yield pending.pop(order[position])
                    position += 1

    def __exit__(self, *exc: object) -> None:
        for p in self._procs:
            p.join(timeout=10 if exc[0] is None else 0.1)
            if p.is_alive():
                p.terminate()
                p.join()
        if exc[0] is not None:  # tasks may still sit in the queue's pipe, which no worker reads any more: without
            self._tasks.cancel_join_thread()  # this the interpreter's exit waits forever on the queue's feeder thread
