"""Simulator throughput: dataset-1 photons and dataset-2 electrons, against the targets and a naive baseline.

Targets (issue 2): >= 20,000 dataset-1-photon showers/s and >= 2,000 dataset-2 showers/s on 2 cores.
The baseline, measured in the same run, is the same model called one shower at a time (what a
per-shower Python loop costs); the vectorised run uses the production path (blocks in 2 threads).
Run: .venv/bin/python benchmarks/bench_simulate.py [--n-ds1 100000] [--n-ds2 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detsim.sim.calo.config import compose_simulate_config, plan_from_config
from detsim.sim.calo.runner import iter_chunks
from detsim.sim.calo.shower import check_detector, simulate_showers

TARGETS = {"calochallenge_ds1_photons": 20_000.0, "calochallenge_ds2": 2_000.0}


def vectorised_rate(plan, n: int, threads: int, block_size: int) -> float:
    start = time.perf_counter()
    done = sum(len(c) for c in iter_chunks(plan, n, seed=1, chunk_size=16 * block_size, block_size=block_size, threads=threads))
    return done / (time.perf_counter() - start)


def per_shower_rate(plan, n: int) -> float:
    det = check_detector(plan.detector)
    rng = np.random.default_rng(1)
    energies = np.exp(rng.uniform(np.log(1e3), np.log(1e6), n))
    start = time.perf_counter()
    for e in energies:
        simulate_showers(plan.geometry, det, plan.particle, np.array([e]), rng)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ds1", type=int, default=100_000)
    parser.add_argument("--n-ds2", type=int, default=10_000)
    parser.add_argument("--n-baseline", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for geometry, n in (("calochallenge_ds1_photons", args.n_ds1), ("calochallenge_ds2", args.n_ds2)):
        cfg = compose_simulate_config([f"geometry={geometry}"])
        plan = plan_from_config(cfg)
        block = int(cfg.simulator.block_size)
        vectorised_rate(plan, block, args.threads, block)  # warm-up
        fast = vectorised_rate(plan, n, args.threads, block)
        single = vectorised_rate(plan, max(n // 4, block), 1, block)
        naive = per_shower_rate(plan, args.n_baseline)
        target = TARGETS[geometry]
        print(
            f"{geometry:27s} {plan.particle:8s} {fast:10,.0f} showers/s ({args.threads} threads) "
            f"= {fast / target:5.2f}x target {target:,.0f}; {single:10,.0f}/s on 1 thread; "
            f"naive per-shower loop {naive:8,.0f}/s -> {fast / naive:6.1f}x"
        )


if __name__ == "__main__":
    main()
