"""Cost of detsim's production callbacks (NaN guard, RNG states in checkpoints, preemption hook) per training run.

Trains the default dataset-1 photon VAE twice on the same simulator file, with and without the three
callbacks, and prints the wall-time ratio (measured in the same process, so the machine's load cancels out).
    python benchmarks/prod_overhead.py [--n 4000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prod_support import compose_train, tiny_shower_file  # noqa: E402

from detsim.cli.train import train  # noqa: E402

PROD = ["finite_loss", "rng_state", "preemption"]


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
        data = tiny_shower_file(tmp, n=args.n)
        run(tmp, data, 1, True, "warmup")
        base, prod = [], []
        for rep in range(args.repeat):  # alternate, keep the fastest of each: shared machines are noisy
            base.append(run(tmp, data, args.epochs, False, f"base{rep}"))
            prod.append(run(tmp, data, args.epochs, True, f"prod{rep}"))
    print(f"{args.n} showers x {args.epochs} epochs (best of {args.repeat}): baseline {min(base):.2f} s, "
          f"with production callbacks {min(prod):.2f} s, ratio {min(prod) / min(base):.3f}")


if __name__ == "__main__":
    main()
