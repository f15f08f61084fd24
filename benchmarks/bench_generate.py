"""Generation speed of the default VAE: torch eager, torch.compile and onnxruntime against the decoder's
matmul FLOP limit, all measured in the same run (issue 17, point 2).

For each batch size: showers/s of each runtime, and the limit = showers/s of a plain chain of matmuls of
the decoder's shapes (batch x in -> out for every Linear, no bias, no activation, no sampling), measured
now on this machine, and the rate of drawing the batch's random numbers alone (`ShowerGenerator.draw`, as
every runtime here draws them; with the matmuls, the floor of generation on that stream), and of one pass
doing only the sampler's unavoidable exp/log (with the two: the ceiling of any sampler). Ratios printed: runtime /
limit, onnxruntime / fastest. Freed buffers stay in the heap as in detsim-generate (conf/generate.yaml
`heap_buffers_mb`; `--heap-buffers-mb 0` for the C library's defaults). Targets (2 cores, dataset 1
photons): batch 10,000 >= 250,000 showers/s with the fastest runtime; batch 1 <= 0.5 ms per shower;
onnxruntime within 1.5x of the fastest. The generator is the default model freshly initialised, with its
voxel map (and, for dataset 2, its energy map) switched on (identity tables: the same work as fitted maps) and
the configured fitted prior:
timing depends on shapes, not on trained weights. onnxruntime times include drawing its random inputs
with `ShowerGenerator.draw` (what a Python host does; a C++ host draws them itself); its calls run on `--threads` host
threads with one intra-op thread each (a batch of one call: all threads in that call). Findings: docs/studies/2026-11-30-generation-speed.md.

    python benchmarks/bench_generate.py                         # dataset 1 photons, 2 threads
    python benchmarks/bench_generate.py --dataset 2             # dataset 2 electrons (6480 voxels)
    python benchmarks/bench_generate.py --profile               # where the eager sampler spends its time
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

EXPERIMENTS = {1: "calo_vae_ds1_photons", 2: "calo_vae_ds2"}
TARGETS = {"batch10k_showers_per_s": 250_000, "batch1_ms_per_shower": 0.5, "onnx_vs_fastest": 1.5}


def build_generator(dataset: int) -> torch.nn.Module:
    from detsim.config import model_kwargs
    from detsim.models.vae import CaloVAE

    torch.manual_seed(0)
    # the settings a training measures from its file (null in the experiments), fixed here: speed does not depend on them
    measured = ["model.readout_threshold_mev=0.5", "model.condition.e_min_mev=1000", "model.condition.e_max_mev=100000",
                "model.preprocessing.scale=0.1"] if dataset == 2 else []
    model = CaloVAE(**model_kwargs([f"experiment={EXPERIMENTS[dataset]}", *measured])).eval()
    model.generator.voxel_map.fitted.fill_(True)
    model.generator.energy_map.fitted.fill_(True)  # the ds2 recipe's energy map (identity tables: the same work)
    return model.generator


def interleaved_best(fns: dict[str, Callable[[], Any]], repeats: int, budget_s: float) -> dict[str, float]:
    """Fastest time of each runtime, timed in turns (on a shared machine the load drifts; turns share it)."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():  # warm-up (compilation, session initialisation)
        fn()
    start = time.perf_counter()
    for i in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() - start > budget_s:
            break
    return best


def matmul_chain(gen: torch.nn.Module, batch: int) -> Callable[[], Any]:
    """The decoder's matmuls alone (same shapes, no bias/activation): the FLOP floor of generation."""
    weights = [m.weight.detach().t().contiguous() for m in gen.decoder.modules() if isinstance(m, torch.nn.Linear)]
    xs = [torch.randn(batch, w.shape[0]) for w in weights]
    outs = [torch.empty(batch, w.shape[1]) for w in weights]
    return lambda: [torch.mm(x, w, out=o) for x, w, o in zip(xs, weights, outs)]


def draw_only(gen: torch.nn.Module, batch: int) -> Callable[[], Any]:
    """The batch's random numbers alone, as every runtime here draws them (`ShowerGenerator.draw`): with the
    matmuls, the floor of generation on that stream."""
    rng = torch.Generator().manual_seed(2)
    return lambda: gen.draw(batch, rng)


def sampler_math(gen: torch.nn.Module, batch: int) -> Callable[[], Any]:
    """One compiled pass doing only what the sampler cannot avoid: read the head output (hit, loc, width
    columns) and the uniforms, 3 exp and 2 log per voxel (width, hit probability, the Weibull inverse CDF's
    two logs, the energy), write the showers. With the matmuls and the draws: a ceiling for any sampler."""
    v = gen.n_voxels
    head = torch.rand(batch, 3 * v) * 0.5 + 0.1
    uniform = torch.rand(batch, v) * 0.9 + 0.05

    def math5(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x[:, 2 * v :].exp() + x[:, :v].exp() + (u.log().neg().log() + x[:, v : 2 * v]).exp()

    compiled = torch.compile(math5)
    return lambda: compiled(head, uniform)


def decoder_flops(gen: torch.nn.Module) -> int:
    return sum(2 * m.in_features * m.out_features for m in gen.decoder.modules() if isinstance(m, torch.nn.Linear))


def onnx_runner(gen: torch.nn.Module, threads: int, tmp: Path, chunk: int) -> Callable[[torch.Tensor, torch.Generator], Any]:
    """A Python host of the exported graph: draws the inputs with `ShowerGenerator.draw`, runs `chunk` rows per call
    (cache-sized calls beat one call over N x V arrays; 512 measured best for ds1 on one thread) on
    `threads` host threads, each call with one intra-op thread, as Geant4 / ATLAS workers run a session:
    with two intra-op threads every one of the graph's ~80 nodes is a parallel region, and on a shared
    machine each region's barrier waits for a descheduled thread (measured up to 2x slower). A batch that
    is a single call gets all `threads` as intra-op threads instead (nothing else would run on them: ds2 batch
    1 4.7 -> 3.3 ms, ds1 batch 100 1.76 -> 1.46 ms, measured in turns)."""
    import onnxruntime as ort

    from detsim.runtime.export import export

    path = export(gen, tmp / "generator.onnx", "onnx")

    def session(intra_op_threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    per_call, lone = session(1), session(threads)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None  # session.run is thread-safe and frees the GIL

    def call(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return per_call.run(None, inputs)[0]

    def run(e: torch.Tensor, rng: torch.Generator) -> Any:
        draws = gen.draw(len(e), rng)
        inputs = {"incident_energy": e.numpy(), **{k: v.numpy() for k, v in draws.items()}}
        if len(e) <= chunk:
            return lone.run(None, inputs)[0]
        calls = [{k: v[i : i + chunk] for k, v in inputs.items()} for i in range(0, len(e), chunk)]
        return [call(c) for c in calls] if pool is None else list(pool.map(call, calls))

    return run


def profile_eager(gen: torch.nn.Module, batch: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    e = energies(gen, batch)
    rng = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        gen(e, rng)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                gen(e, rng)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def simulator_ratio(gen: torch.nn.Module, dataset: int, rates: dict[str, float]) -> None:
    """Showers/s of detsim's reference simulator on the model's geometry, and each runtime's ratio to it."""
    from detsim.config import compose_config
    from detsim.sim import quick_sample

    cfg = compose_config("train", [f"experiment={EXPERIMENTS[dataset]}"])
    particle = "photon" if dataset == 1 else "electron"
    n = 2000
    t = interleaved_best({"sim": lambda: quick_sample(geometry=cfg.geometry.name, particle=particle, n=n, seed=1)}, 3, 30)
    sim = n / t["sim"]
    print(f"reference simulator: {sim:,.0f} showers/s; " + ", ".join(
        f"{name} / simulator {rate / sim:.1f}x" for name, rate in rates.items()))


def energies(gen: torch.nn.Module, n: int) -> torch.Tensor:
    lo, hi = gen.condition.e_min_mev, gen.condition.e_max_mev
    u = np.random.default_rng(0).random(n)
    return torch.as_tensor(lo * (hi / lo) ** u, dtype=torch.float32)


def main() -> None:
    from detsim.config import compose_config
    from detsim.runtime import compile_generator
    from detsim.runtime.allocator import keep_freed_buffers

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=int, default=1, choices=sorted(EXPERIMENTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 100, 10_000])
    parser.add_argument("--runtimes", nargs="*", default=["eager", "compile", "onnx"],
                        choices=["eager", "compile", "onnx"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--budget-s", type=float, default=20.0, help="timing time per batch size (after 3 turns)")
    parser.add_argument("--onnx-chunk", type=int, default=512, help="rows per onnxruntime call")
    parser.add_argument("--heap-buffers-mb", type=int, default=None,
                        help="glibc keeps freed buffers up to this size (default: conf/generate.yaml's, as detsim-generate; 0: libc defaults)")
    parser.add_argument("--profile", action="store_true", help="print the eager sampler's profile at the largest batch")
    parser.add_argument("--simulator", action="store_true",
                        help="also time the reference simulator on the same geometry (ratio generation / simulator)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heap_mb = compose_config("generate", []).heap_buffers_mb if args.heap_buffers_mb is None else args.heap_buffers_mb
    kept = keep_freed_buffers(heap_mb)
    gen = build_generator(args.dataset)
    print(f"dataset {args.dataset} ({EXPERIMENTS[args.dataset]}): {gen.n_voxels} voxels, decoder "
          f"{decoder_flops(gen) / 1e6:.2f} MFLOP/shower; {args.threads} torch threads, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; freed buffers up to {heap_mb} MB kept: {kept}")
    if args.profile:
        profile_eager(gen, max(args.batches))
    runners: dict[str, Callable[[torch.Tensor, torch.Generator], Any]] = {}
    if "eager" in args.runtimes:
        runners["eager"] = gen
    if "compile" in args.runtimes:
        runners["compile"] = compile_generator(gen)
    with tempfile.TemporaryDirectory() as tmp:
        if "onnx" in args.runtimes:
            runners["onnxruntime"] = onnx_runner(gen, args.threads, Path(tmp), args.onnx_chunk)
        results: dict[int, dict[str, float]] = {}
        for batch in args.batches:
            e = energies(gen, batch)
            rng = torch.Generator().manual_seed(1)
            fns = {name: (lambda run=run: run(e, rng)) for name, run in runners.items()}
            fns["matmul limit"] = matmul_chain(gen, batch)
            fns["draws"] = draw_only(gen, batch)
            fns["sampler math"] = sampler_math(gen, batch)
            with torch.inference_mode():
                best = interleaved_best(fns, args.repeats, args.budget_s)
            rates = {name: batch / t for name, t in best.items()}
            limit, draws, math = rates.pop("matmul limit"), rates.pop("draws"), rates.pop("sampler math")
            results[batch] = rates  # the runtimes only: the same-run references are popped above
            fastest = max(rates, key=rates.get)
            floor = 1.0 / (1.0 / limit + 1.0 / draws)
            ceiling = 1.0 / (1.0 / limit + 1.0 / draws + 1.0 / math)
            print(f"batch {batch:>6}: decoder matmul limit {limit:>12,.0f} showers/s; drawing the random numbers alone "
                  f"{draws:,.0f}/s; both {floor:,.0f}/s ({floor / limit:.0%} of the limit); with the sampler's "
                  f"exp/log pass ({math:,.0f}/s) {ceiling:,.0f}/s ({ceiling / limit:.0%}): the ceiling of any sampler")
            for name, rate in rates.items():
                extra = "" if name != "onnxruntime" else f", fastest/onnxruntime {rates[fastest] / rate:.2f}x"
                print(f"  {name:12s} {rate:>12,.0f} showers/s  {1e3 / rate:8.4f} ms/shower  "
                      f"{rate / limit:6.1%} of the limit{extra}")
    if args.simulator:
        simulator_ratio(gen, args.dataset, results[max(results)])
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.dataset == 1:
        for batch, check in ((10_000, lambda r: f"{max(r.values()):,.0f}/s vs >= 250,000/s"),
                             (1, lambda r: f"{1e3 / max(r.values()):.3f} ms/shower vs <= 0.5 ms")):
            if batch in results:
                print(f"target batch {batch}: {check(results[batch])}")
        for batch, r in results.items():
            if "onnxruntime" in r:
                print(f"target onnxruntime within 1.5x of fastest at batch {batch}: {max(r.values()) / r['onnxruntime']:.2f}x")


if __name__ == "__main__":
    main()
