"""Chunked, seeded, threaded simulation runs and the `simulate` app's calo entry point.

Showers are made in fixed blocks of `simulator.block_size`; block b draws from
SeedSequence(seed, spawn_key=(b,)), so the numbers depend on the seed only, not on chunk size or
thread count. Blocks of one chunk run in threads (numpy samplers release the GIL); each chunk is
written before the next is made, so a 100k-shower dataset-2 run never sits in memory.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import detsim
from detsim.config import flag, positive_int, run_fingerprint
from detsim.errors import ConfigError
from detsim.files import check_output_file
from detsim.io import file_format
from detsim.io.resume import resumable_output
from detsim.showers import CaloShowers
from detsim.sim.calo.config import SimulationPlan, plan_from_config
from detsim.sim.calo.shower import check_detector, simulate_showers
from detsim.spectra import sample_energies


def block_rng(seed: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(block),)))


def simulate_block(plan: SimulationPlan, seed: int, block: int, n: int, energies: np.ndarray | None = None) -> CaloShowers:
    """Block `block` of a run: its energies (unless given) and showers from the block's own generator."""
    rng = block_rng(seed, block)
    e = sample_energies(plan.spectrum, n, rng) if energies is None else energies
    return simulate_showers(plan.geometry, plan.detector, plan.particle, e, rng)


def iter_chunks(
    plan: SimulationPlan,
    n: int,
    seed: int,
    chunk_size: int = 8192,
    block_size: int = 1024,
    threads: int = 1,
    energies: np.ndarray | None = None,
    first_block: int = 0,
) -> Iterator[CaloShowers]:
    """Yield the run's showers from block `first_block` on (a resumed job), in chunks of whole blocks."""
    if n < 0 or block_size < 1:
        raise ConfigError(f"keys 'n', 'simulator.block_size': expected n >= 0 and block_size >= 1, found {n}, {block_size}")
    if energies is not None and len(energies) != n:
        raise ConfigError(f"energies: expected {n} values, found {len(energies)}")
    plan = SimulationPlan(plan.geometry, check_detector(plan.detector), plan.spectrum, plan.particle)
    n_blocks = -(-n // block_size)
    per_chunk = max(1, chunk_size // block_size)

    def one(block: int) -> CaloShowers:
        lo, hi = block * block_size, min(n, (block + 1) * block_size)
        return simulate_block(plan, seed, block, hi - lo, None if energies is None else energies[lo:hi])

    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        for first in range(int(first_block), n_blocks, per_chunk):
            blocks = range(first, min(n_blocks, first + per_chunk))
            yield CaloShowers.concatenate(list(pool.map(one, blocks)))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]simulate[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
    )


def run(cfg: DictConfig) -> Path:
    """The calo simulator entry (`simulator.entry`): simulate cfg.n showers and write them to cfg.out.

    Blocks go to `<out stem>.partial/`; a killed job rerun with the same command continues there
    (`detsim.io.resume`).
    """
    n = positive_int(cfg.n, "n")
    seed = positive_int(cfg.seed, "seed", minimum=0)
    out = Path(str(cfg.out))
    overwrite = flag(cfg.get("overwrite", False), "overwrite")
    file_format(out)
    check_output_file(out, overwrite)  # before any shower is simulated
    plan = plan_from_config(cfg)
    sim = cfg.simulator
    block_size = positive_int(sim.block_size, "simulator.block_size")
    attrs = {
        "geometry": plan.geometry.name,
        "detector": str(plan.detector.get("name", "")),
        "particle": plan.particle,
        "seed": int(cfg.seed),
        "detsim_version": detsim.__version__,
        "simulator": "detsim.sim.calo (GFlash EM + simple hadronic model)",
    }
    root = OmegaConf.to_container(cfg.root, resolve=True) if cfg.get("root") is not None else None
    chunk_size = positive_int(cfg.chunk_size, "chunk_size")
    threads = int(sim.get("threads", 1))
    next(iter_chunks(plan, 1, seed, 1, 1, 1))  # one shower: config errors surface before a file exists
    start = time.perf_counter()
    with resumable_output(out, plan.geometry.n_voxels, run_fingerprint(cfg), attrs=attrs, root=root,
                          overwrite=overwrite, resume=flag(cfg.get("resume", True), "resume")) as writer, _progress() as bar:
        done = writer.n_written
        bar.disable = not flag(cfg.get("progress", True), "progress")
        task = bar.add_task(f"{plan.particle} in {plan.geometry.name}", total=n, completed=done, rate="")
        for chunk in iter_chunks(plan, n, seed, chunk_size, block_size, threads, first_block=done // block_size):
            writer.append(chunk)
            rate = (writer.n_written - done) / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=len(chunk), rate=f"{rate:,.0f} showers/s")
    print(f"wrote {n} {plan.particle} showers ({plan.geometry.describe()}) to {out}")
    return out
