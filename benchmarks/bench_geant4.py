"""Geant4 backend throughput (stand-in or real data), with ratios measured in the same run.

  PYTHONPATH=src python benchmarks/bench_geant4.py --data-dir /tmp/g4standin --n 20

Prints: CPU per shower at 1, 10, 100 GeV and over 1-100 GeV log-uniform (Geant4's event CPU, from the
workers); showers/s with 1 and 2 workers (wall clock, initialisation excluded by a warm pool); the
parametric simulator's (`simulator=calo`) speed-up over Geant4 on the same log-uniform spectrum.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detsim.sim.calo.config import compose_simulate_config
from detsim.sim.geant4.pool import block_tasks
from detsim.sim.geant4.runner import iter_results, setup_from_config

SPECTRUM = ["spectrum=uniform_1_100gev", "spectrum.kind=log_uniform"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--n", type=int, default=20, help="showers per point (100 GeV: n // 4)")
    args = parser.parse_args()
    base = ["simulator=geant4", "geometry=calochallenge_ds2", "particle=electron", f"geant4.data_dir={args.data_dir}"]
    cfg = compose_simulate_config(base + SPECTRUM + [f"simulator.block_size={args.n}"])
    setup = setup_from_config(cfg)
    label = "stand-in" if setup.standin else "real"
    print(f"Geant4 ({label} data), {setup.spec.physics_list}, {setup.calo.describe()}")
    points = {"1 GeV": np.full(args.n, 1000.0), "10 GeV": np.full(args.n, 10000.0), "100 GeV": np.full(max(args.n // 4, 2), 1e5)}
    cpu = {}
    for name, energies in points.items():
        (r,) = iter_results(setup, block_tasks(len(energies), 1, len(energies), energies=energies), 1)
        cpu[name] = float(r.cpu.mean())
    tasks = block_tasks(args.n * 2, 2, max(args.n // 2, 1), setup.plan.spectrum)
    rates = {}
    for k in (1, 2):
        start, done = None, 0
        for r in iter_results(setup, tasks, k):
            if start is None:  # the first block includes start-up; time the rest
                start = time.perf_counter()
                continue
            done += len(r.cpu)
            cpu.setdefault("1-100 GeV log-uniform", float(r.cpu.mean()))
        rates[k] = done / (time.perf_counter() - start)
    for name, value in cpu.items():
        print(f"  CPU per shower, {name:>22}: {value * 1e3:8.1f} ms")
    print(f"  showers/s (1-100 GeV): 1 worker {rates[1]:.2f}, 2 workers {rates[2]:.2f} (x{rates[2] / rates[1]:.2f})")
    from detsim.sim import quick_sample

    n_param = 2000
    start = time.perf_counter()
    quick_sample("calochallenge_ds2", "electron", n_param, 0, overrides=SPECTRUM)
    param_s = (time.perf_counter() - start) / n_param
    g4_s = cpu["1-100 GeV log-uniform"]
    print(f"  parametric simulator: {param_s * 1e3:.3f} ms per shower -> {g4_s / param_s:,.0f}x faster than Geant4 (same spectrum, CPU)")
    vae_s = vae_seconds_per_shower(n_param)
    print(f"  default ds2 VAE (eager, batch 1000): {vae_s * 1e3:.3f} ms per shower -> {g4_s / vae_s:,.0f}x faster than Geant4"
          " (target >= 10^4x on CPU)")


def vae_seconds_per_shower(n: int) -> float:
    """The default dataset-2 VAE's generation time per shower on the same spectrum (an untrained network of the
    default shape costs what a trained one does; the settings a training measures are fixed)."""
    import torch

    from detsim.config import model_kwargs
    from detsim.models.vae import CaloVAE

    torch.manual_seed(0)
    model = CaloVAE(**model_kwargs(["experiment=calo_vae_ds2", "model.readout_threshold_mev=0.66",
                                    "model.condition.e_min_mev=1000", "model.condition.e_max_mev=100000",
                                    "model.preprocessing.scale=0.1"])).eval()
    model.generator.voxel_map.fitted.fill_(True)
    energies = torch.as_tensor(1000.0 * 100.0 ** np.random.default_rng(0).random(n), dtype=torch.float32)
    with torch.no_grad():
        model.generator(energies[:100])  # warm-up
        start = time.perf_counter()
        for chunk in energies.split(1000):
            model.generator(chunk)
    return (time.perf_counter() - start) / n


if __name__ == "__main__":
    main()
