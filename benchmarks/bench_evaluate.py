"""Evaluation cost on CPU: wall time of a full evaluation (features, histograms, plots, low- and
high-level classifier tests) for 100k dataset-1 photon and 20k dataset-2 showers, and the feature
throughput relative to one plain numpy pass (a row sum) over the same array.

The classifier uses `conf/eval/classifier/mlp_fast.yaml` (3 x 256, <= 10 epochs, early stopping)
because the challenge default (3 x 2048, 50 epochs) takes hours on two CPU cores; the time of one
default-config epoch on a subset is measured and extrapolated instead.

    python benchmarks/bench_evaluate.py [--ds1 100000] [--ds2 20000] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from detsim.eval.two_sample import two_sample_test
from detsim.eval.features import ShowerFeatures, low_level_inputs
from detsim.eval.report import write_plots
from detsim.eval.suite import backbone_factory, evaluate_showers
from detsim.geometry import load_geometry
from detsim.paths import config_dir
from detsim.sim import quick_sample


def eval_config(classifier: str, threads: int, geometry: str = "calochallenge_ds1_photons") -> dict:
    """The evaluation config as detsim-evaluate composes it for `geometry` (which fixes the readout threshold)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        composed = compose("evaluate", overrides=["reference=x", "generated=y", f"eval/classifier={classifier}",
                                                  f"geometry={geometry}"])
    cfg = OmegaConf.to_container(composed.eval, resolve=True)
    cfg["classifier"].update(enable_progress_bar=False, num_threads=threads)
    return cfg


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_features(showers, geometry) -> None:
    features = ShowerFeatures(geometry)
    features.compute_matrix(showers[:10])  # build weight matrices outside the timing
    t_feat = best_of(lambda: features.compute_matrix(showers))
    t_base = best_of(lambda: showers.showers.sum(axis=1))
    n = len(showers)
    print(
        f"  features: {t_feat:.3f} s ({n / t_feat:,.0f} showers/s); plain numpy row sum: {t_base:.4f} s; "
        f"ratio features/plain pass = {t_feat / t_base:.1f}"
    )


def bench_dataset(name: str, particle: str, n: int, cfg: dict):
    geometry = load_geometry(config_dir() / "geometry" / f"{name}.yaml")
    t = time.perf_counter()
    ref = quick_sample(name, particle, n=n, seed=1)
    gen = quick_sample(name, particle, n=n, seed=2)
    print(f"{name}: {n} + {n} showers simulated in {time.perf_counter() - t:.1f} s")
    bench_features(ref, geometry)
    t = time.perf_counter()
    result = evaluate_showers(ref, gen, geometry, cfg, ("low", "high"), seed=0)
    t_eval = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_plots(result, Path(tmp), ("reference", "generated"))
        t_plots = time.perf_counter() - t
    m = result.metrics()
    print(
        f"  evaluation (features + histograms + low/high classifiers): {t_eval:.1f} s; plots "
        f"({len(result.histograms) + 1} PNGs): {t_plots:.1f} s; total {t_eval + t_plots:.1f} s"
    )
    print(
        f"  auc_low {m['auc_low']:.3f} (epochs to best {m['best_epoch_low']:.0f}), auc_high {m['auc_high']:.3f}, "
        f"separation_power_mean {m['separation_power_mean']:.4f}"
    )
    return ref, gen, geometry


def bench_default_epoch(ref, gen, geometry, threads: int, n_sub: int) -> None:
    """One epoch of the challenge-default 3 x 2048 MLP on a subset, extrapolated to the full run."""
    cfg = eval_config("mlp", threads)["classifier"]
    cfg.update(max_epochs=1)
    x_ref, x_gen = low_level_inputs(ref[:n_sub]), low_level_inputs(gen[:n_sub])
    t = time.perf_counter()
    two_sample_test(x_ref, x_gen, backbone_factory(cfg["backbone"], geometry), cfg, seed=0)
    t1 = time.perf_counter() - t
    scale = len(ref) / n_sub
    print(
        f"  default classifier (3x2048), one epoch on {n_sub}+{n_sub} showers: {t1:.1f} s -> "
        f"~{t1 * scale * 50 / 60:.0f} min for 50 epochs on all {len(ref)}+{len(gen)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ds1", type=int, default=100_000)
    parser.add_argument("--ds2", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default-subset", type=int, default=5_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = eval_config("mlp_fast", args.threads)
    print(f"CPU threads: {args.threads}; classifier: mlp_fast (3x256, <= 10 epochs, patience 3)")
    ref, gen, geometry = bench_dataset("calochallenge_ds1_photons", "photon", args.ds1, cfg)
    bench_default_epoch(ref, gen, geometry, args.threads, min(args.default_subset, args.ds1))
    del ref, gen
    cfg = eval_config("mlp_fast", args.threads, "calochallenge_ds2")  # its own readout threshold
    ref, gen, geometry = bench_dataset("calochallenge_ds2", "electron", args.ds2, cfg)
    bench_default_epoch(ref, gen, geometry, args.threads, min(args.default_subset, args.ds2))


if __name__ == "__main__":
    main()
