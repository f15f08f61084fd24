"""Cost of detsim's production callbacks (NaN guard, RNG states in checkpoints, preemption hook) per training run.

Trains the default dataset-1 photon VAE twice on the same simulator file, with and without the three
callbacks, and prints the wall-time ratio (measured in the same process, so the machine's load cancels out).
    python benchmarks/bench_prod_overhead.py [--n 4000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from detsim.cli.train import train
from detsim.io import write_showers
from detsim.paths import config_dir
from detsim.sim import quick_sample

PROD = ["finite_loss", "rng_state", "preemption"]


def compose_train(overrides: list[str]) -> DictConfig:
    """The `detsim-train` config as the CLI composes it."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def run(tmp: Path, data: Path, epochs: int, with_prod: bool, tag: str) -> float:
    overrides = [
        "trainer=cpu", f"data.path={data}", "data.batch_size=256", f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "logger.log_model=false", "run_test=false",
        f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"paths.output_dir={tmp / tag}", f"paths.root_dir={tmp}",
    ] + ([] if with_prod else [f"~callbacks.{name}" for name in PROD])
    cfg = compose_train(overrides)
    start = time.perf_counter()
    train(cfg)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "showers.h5"
        write_showers(data, quick_sample("calochallenge_ds1_photons", "photon", n=args.n, seed=3))
        run(tmp, data, 1, True, "warmup")
        base, prod = [], []
        for rep in range(args.repeat):  # alternate, keep the fastest of each: shared machines are noisy
            base.append(run(tmp, data, args.epochs, False, f"base{rep}"))
            prod.append(run(tmp, data, args.epochs, True, f"prod{rep}"))
    print(f"{args.n} showers x {args.epochs} epochs (best of {args.repeat}): baseline {min(base):.2f} s, "
          f"with production callbacks {min(prod):.2f} s, ratio {min(prod) / min(base):.3f}")


if __name__ == "__main__":
    main()
