"""Throughput of the calorimeter VAE, each figure next to a baseline measured in the same run.

Generation: the default dataset-1-photon VAE (conf/model/calo_vae.yaml; also the ATLAS reference)
at batch 10,000, against (a) the reference simulator on the same geometry, (b) the machine's measured
float32 matmul peak, i.e. the fraction of the decoder's FLOP limit reached. Target >= 100,000
showers/s on 2 CPU cores.
Training: Lightning `Trainer.fit` vs a plain PyTorch loop over the same model, data and optimiser
(target >= 0.9x).

    python benchmarks/bench_vae.py                      # CPU, 2 threads
    python benchmarks/bench_vae.py --device cuda        # generation on a GPU (if available)
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import OmegaConf

from detsim.paths import config_dir

GEOMETRY = "calochallenge_ds1_photons"


def model_cfg(name: str, geometry: str = GEOMETRY) -> dict[str, Any]:
    """`model=<name>` as `detsim-train` composes it (defaults lists included), as CaloVAE keyword arguments."""
    from detsim.config import model_kwargs

    detector = OmegaConf.load(config_dir() / "detector" / "atlas_lar_pb.yaml")
    return model_kwargs([f"model={name}", f"geometry={geometry}",
                         f"model.readout_threshold_mev={float(detector.threshold_MeV)}"])


def best_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Fastest of `repeats` timed calls after one warm-up (the least disturbed by other load)."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak_gflops(device: str, sync: Callable[[], None], size: int = 2048) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    return 2 * size**3 / best_time(lambda: a @ b, 5, sync) / 1e9


def decoder_flops_per_shower(model: torch.nn.Module) -> int:
    """Multiply-adds x 2 of the decoder's linear layers (the matmul FLOP floor of one shower)."""
    return sum(2 * m.in_features * m.out_features for m in model.generator.decoder.modules()
               if isinstance(m, torch.nn.Linear))


def interleaved_best(fns: dict[str, Callable[[], Any]], repeats: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Fastest time of each variant, timed in turns (on a shared machine load drifts; turns share it)."""
    best = {name: float("inf") for name in fns}
    for name, fn in fns.items():  # warm-up (and compilation, for compiled variants)
        fn()
        sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


class MarginalsOff(torch.nn.Module):
    """The same generator with its per-voxel calibration switched off (what the map costs)."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, energies: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        with self.generator.voxel_map.disabled():
            return self.generator(energies, gen)


def fit_marginals_to_simulation(model: torch.nn.Module, device: str, n: int = 20_000) -> None:
    from detsim.sim import quick_sample

    sim = quick_sample(geometry=GEOMETRY, particle="photon", n=n, seed=2)
    with torch.inference_mode():
        model.fit_voxel_map(torch.as_tensor(sim.incident_energy, device=device),
                            torch.as_tensor(sim.showers, device=device))


def bench_generation(device: str, batch: int, repeats: int, compile: bool) -> None:
    from detsim.models.vae import CaloVAE

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads)")
    peak = matmul_peak_gflops(device, sync)
    energies = torch.as_tensor(2.0 ** np.random.default_rng(0).integers(8, 23, batch), dtype=torch.float32,
                               device=device)
    fns: dict[str, Callable[[], Any]] = {}
    flops: dict[str, int] = {}  # the decoder's matmul FLOPs per shower, per variant
    for name in ("calo_vae", "calo_vae_atlas"):
        model = CaloVAE(**model_cfg(name)).to(device).eval()
        gen = torch.Generator(device=device).manual_seed(0)
        variants = [(name, model.generator)]
        if model.hparams["voxel_map"]["_target_"].endswith("QuantileVoxelMap"):
            # an unfitted calibration is skipped: fit it (to simulator showers, as training does with the
            # validation set) so the default is timed with its per-voxel map, and time it without as well
            fit_marginals_to_simulation(model, device)
            variants.append((f"{name} (marginals off)", MarginalsOff(model.generator)))
        if compile:
            variants.append((f"{name}+compile", torch.compile(model.generator)))
        for label, fn in variants:
            flops[label] = decoder_flops_per_shower(model)
            fns[label] = lambda fn=fn, gen=gen: fn(energies, gen)
    if device == "cpu":
        from detsim.sim import quick_sample

        n_sim = min(batch, 10_000)
        fns["simulator"] = lambda: quick_sample(geometry=GEOMETRY, particle="photon", n=n_sim, seed=1)
    with torch.inference_mode():
        best = interleaved_best(fns, repeats, sync)
    peak = max(peak, matmul_peak_gflops(device, sync))  # the less disturbed of two measurements
    print(f"float32 matmul peak ({device}): {peak:,.0f} GFLOP/s")
    rates = {label: batch / dt for label, dt in best.items() if label != "simulator"}
    for label, rate in rates.items():
        limit = peak * 1e9 / flops[label]
        print(f"{label:24s} generation: {rate:12,.0f} showers/s at batch {batch} "
              f"({rate / limit:.1%} of the decoder's matmul FLOP limit {limit:,.0f}/s)")
    if "simulator" in best:
        sim_rate = n_sim / best["simulator"]
        print(f"reference simulator:        {sim_rate:12,.0f} showers/s")
        for label, rate in rates.items():
            print(f"ratio {label:24s} / simulator: {rate / sim_rate:8.1f}x   (target: >= 100,000 showers/s: "
                  f"{'met' if rate >= 1e5 else 'NOT met'})")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def bench_training(steps: int, batch: int) -> None:
    import lightning as L

    from detsim.models.vae import CaloVAE
    from detsim.sim import quick_sample

    data = quick_sample(geometry=GEOMETRY, particle="photon", n=batch * 8, seed=1)
    e, s = torch.as_tensor(data.incident_energy), torch.as_tensor(data.showers)
    batches = [{"incident_energy": e[i : i + batch], "showers": s[i : i + batch]} for i in range(0, len(e), batch)]
    loader = [batches[i % len(batches)] for i in range(steps)]

    torch.manual_seed(0)
    model = CaloVAE(**model_cfg("calo_vae"))
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    model.train()

    def plain() -> None:
        for b in loader:
            opt.zero_grad(set_to_none=True)
            terms, _, _ = model.loss_terms(b["incident_energy"], b["showers"])
            terms["loss"].backward()
            opt.step()

    # `self.log` needs a trainer; the plain loop computes the same loss without it
    t_plain = best_time(plain, 3)

    class LoopTimer(L.Callback):
        """Times the training loop itself (first batch to end), not Trainer construction."""

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 0:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.elapsed = time.perf_counter() - self.t0

    def lightning() -> float:
        L.seed_everything(0, verbose=False)
        timer = LoopTimer()
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                            accelerator="cpu", callbacks=[timer])
        trainer.fit(CaloVAE(**model_cfg("calo_vae")), torch.utils.data.DataLoader(loader, batch_size=None))
        return timer.elapsed

    t_light = min(lightning() for _ in range(3))
    n = steps * batch
    print(f"training, batch {batch}, {steps} steps: plain PyTorch {n / t_plain:,.0f} showers/s, "
          f"Lightning {n / t_light:,.0f} showers/s, ratio Lightning/plain {t_plain / t_light:.2f} (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--train-batch", type=int, default=1024)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd generator")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    bench_generation(args.device, args.batch, args.repeats, args.compile)
    if not args.skip_training and args.device == "cpu":
        bench_training(args.train_steps, args.train_batch)


if __name__ == "__main__":
    main()
