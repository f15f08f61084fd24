"""What resumable output costs a simulate/generate job: block files plus a merge against one file written in one go.

A long job writes each block as a file in `<out stem>.partial/` and merges them at the end (docs/production.md,
"Resume"), so a kill loses at most one block. This measures, in one run on the same showers:
- `sim`: the parametric simulator making the showers (the job's own work, the baseline);
- `direct`: writing them with `open_output` (one temporary file renamed into place, no resume);
- `resumable`: writing them with `resumable_output` (block files, merge, folder removed).
It prints the extra write time as a fraction of a whole parametric job (sim + direct write); against Geant4
(~0.1-1 s per shower) the same seconds are a fraction of a per mille.

    python benchmarks/bench_resume.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from detsim.config import compose_config
from detsim.io import count_showers, open_output
from detsim.io.resume import resumable_output
from detsim.showers import CaloShowers
from detsim.sim.calo.config import plan_from_config
from detsim.sim.calo.runner import iter_chunks

CASES = {  # geometry, particle, showers, chunk (the simulate app's default chunk_size)
    "dataset-1 photons": ("calochallenge_ds1_photons", "photon", 40_000, 8192),
    "dataset 2 electrons": ("calochallenge_ds2", "electron", 4096, 1024),
}


def simulate(geometry: str, particle: str, n: int, chunk: int) -> tuple[list[CaloShowers], float]:
    plan = plan_from_config(compose_config("simulate", [f"geometry={geometry}", f"particle={particle}"]))
    start = time.perf_counter()
    chunks = list(iter_chunks(plan, n, seed=1, chunk_size=chunk, block_size=min(chunk, 1024), threads=2))
    return chunks, time.perf_counter() - start


def write_direct(chunks: list[CaloShowers], out: Path) -> float:
    start = time.perf_counter()
    with open_output(out, chunks[0].n_voxels) as writer:
        for chunk in chunks:
            writer.append(chunk)
    return time.perf_counter() - start


def write_resumable(chunks: list[CaloShowers], out: Path) -> float:
    start = time.perf_counter()
    with resumable_output(out, chunks[0].n_voxels, {"bench": 1}, overwrite=True) as writer:
        for chunk in chunks:
            writer.append(chunk)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| case | showers | simulate s | direct write s | resumable write s | resumable / direct | extra, share of a parametric job |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench_resume_") as tmp:
        for name, (geometry, particle, n, chunk) in CASES.items():
            chunks, sim_s = simulate(geometry, particle, n, chunk)
            direct, resumable = float("inf"), float("inf")
            for i in range(args.repeats):  # alternate, keep the fastest: the least disturbed by other processes
                direct = min(direct, write_direct(chunks, Path(tmp) / f"direct_{i}.h5"))
                resumable = min(resumable, write_resumable(chunks, Path(tmp) / f"resumable_{i}.h5"))
                assert count_showers(Path(tmp) / f"resumable_{i}.h5") == n
            share = (resumable - direct) / (sim_s + direct)
            print(f"| {name} | {n} | {sim_s:.2f} | {direct:.2f} | {resumable:.2f} | {resumable / direct:.2f}x | {share:+.1%} |",
                  flush=True)


if __name__ == "__main__":
    main()
