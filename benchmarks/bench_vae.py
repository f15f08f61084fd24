"""Training throughput of the calorimeter VAE: Lightning `Trainer.fit` vs a plain PyTorch loop over the
same model, data and optimiser, measured in the same run (target >= 0.9x).

Generation speed (eager, torch.compile, onnxruntime against the decoder's matmul limit) is
benchmarks/bench_generate.py.

    python benchmarks/bench_vae.py                      # CPU, 2 threads
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--train-batch", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_training(args.train_steps, args.train_batch)


if __name__ == "__main__":
    main()
