"""Run every benchmark in turn (`make bench`); each prints its figures and ratios against a same-run baseline.

    python benchmarks/run_all.py [--only simulate io vae generate evaluate gw prod_overhead resume]

The GW benchmark's defaults are CPU-sized; the GPU-sized runs are documented in docs/gw.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "simulate": "bench_simulate.py",
    "io": "bench_io.py",
    "vae": "bench_vae.py",
    "generate": "bench_generate.py",
    "evaluate": "bench_evaluate.py",
    "gw": "bench_gw.py",
    "prod_overhead": "bench_prod_overhead.py",
    "resume": "bench_resume.py",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    args = parser.parse_args()
    failed = []
    for name in args.only:
        print(f"\n=== {name} ({BENCHMARKS[name]}) ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / BENCHMARKS[name])])
        print(f"=== {name}: exit {code}, {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
