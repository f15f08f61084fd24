"""Issue 25, points 4 and 5: the CNN's and the template bank's sensitive distance at a false-alarm rate of one per
week on a day of two-detector (H1, L1) strain, and the same CNN on precessing injections from a wider prior.

    python -m studies.gw.search_sensitivity --cnn RUN/gw_1dcnn.pt --out outputs/gw_search_day --device cuda
    python -m studies.gw.search_sensitivity --cnn RUN/gw_1dcnn.pt --out outputs/gw_search_day --plan   # commands + cost

The network: a two-detector GW1DCNN (V1 zeroed, `input_mask` [1, 1, 0]) trained on G2Net-style windows of the
default aligned-spin prior, e.g. by the G2Net study:
    python -m studies.gw.injections --n-train 60000 --n-test 4000 --k-train 12000 --k-test 600 --out .gwbundle/b.npz
    python -m studies.gw.cnn_vs_matched_filter --bundle .gwbundle/b.npz --net '{"input_mask": [1, 1, 0]}' \\
        --device cuda --minutes 20 --redraw 2 --precision bf16 --out RUN
(or `detsim-train experiment=g2net_1dcnn +model.net.input_mask=[1,1,0] ...`, whose checkpoint loads as well).

Steps, each a detsim command (printed; skipped when its output exists, so a killed run continues where it stopped):
 1. strain: `detsim-simulate simulator=gw_stream` for --duration s (default one day) of H1/L1: foreground (noise +
    IMRPhenomD injections of the default prior every 24-30 s, chirp distance 130-350 Mpc) and background (the same
    noise alone); the precessing foreground: the same noise (same seed), IMRPhenomXPHM injections of
    conf/gw/priors/bbh_precessing (isotropic spins up to 0.99, masses 7-70).
 2. bank: the stochastic bank (conf/gw/bank/default, templates matched on 8 s) placed once with the data's PSD, by a
    zero-lag bank search of the first segment; its trigger file is the `bank_file` of every later bank search.
 3. searches, CNN and bank: zero lag on each foreground; --slides time slides on the background (noise only, so
    every slide, zero lag included, is background: (slides + 1) days of it for one day of data).
 4. `detsim-search mode=evaluate` of each (foreground, background) pair: curves, injections, MLflow.
 5. comparison: the ratio of sensitive distances (CNN / bank) at one per week and one per day with its bootstrap
    error over the injections, where the CNN loses (found fraction per chirp-mass and optimal-SNR bin at one per
    week, both searches), both curves on one plot. Writes OUT/compare.json, OUT/compare.png, OUT/efficiency.csv and
    prints `sensitive distance ratio (CNN / bank) at 1 per week: 0.xx +- 0.xx` (aligned and precessing).

Cost (--plan prints it for the chosen settings): wall time measured on the quiet 2-core development CPU (docs/gw.md,
"Cost"), per hour of H1/L1 data at 2048 Hz and per search pass.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detsim.gw import search_stats as stats
from detsim.gw.strain import read_injections
from detsim.gw.template_bank import chirp_mass
from detsim.gw.triggers import read_triggers
from detsim.metrics.plots import save_figure

# Wall seconds per hour of H1/L1 data at 2048 Hz on the 2-core development machine, quiet (load ~2: the measured job
# alone), 2 torch threads, one 2048-s block (docs/gw.md, "Cost"; 2026-12-07): the default GW1DCNN at stride 0.25 s per
# pass over the data (zero lag or one slide, whitening included; 17.2 zero lag alone, 17.1 per pass with 4 slides); the
# bank per template per filtering pass (1,855 templates: 516 s, the PSD, reading and the 4 slides' recombination
# included); the simulation per stream. The stochastic placement of the 8-s bank is a one-off ~510 s. The CPU seconds
# are ~1.8x these (two threads).
WALL_S_PER_HOUR = {"cnn_pass": 17.1, "bank_template": 0.278, "stream": 16.8}
BANK_PLACEMENT_S = 510.0


def cost_estimate(hours: float, slides: int, templates: int) -> dict[str, float]:
    """Wall hours of each part of the study on the 2-core CPU (a GPU runs the CNN and the bank's FFTs far faster)."""
    c = WALL_S_PER_HOUR
    return {"streams": 2 * hours * c["stream"] / 3600,
            "cnn": hours * c["cnn_pass"] * (slides + 3) / 3600,
            "bank": (BANK_PLACEMENT_S + hours * 3 * templates * c["bank_template"]) / 3600}


@dataclass
class Step:
    name: str
    output: Path
    argv: list[str]


def detsim(tool: str) -> str:
    """The console script beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name(tool)
    return str(beside) if beside.exists() else tool


def steps(args: argparse.Namespace) -> list[Step]:
    out = Path(args.out)
    stream, prec = out / "stream", out / "stream_precessing"
    sim = [detsim("detsim-simulate"), "simulator=gw_stream", f"duration={args.duration}", f"seed={args.seed}",
           "progress=false", f"hydra.run.dir={out}/hydra"]
    search = [detsim("detsim-search"), f"device={args.device}", "progress=false", f"hydra.run.dir={out}/hydra"]
    cnn = ["method=cnn", f"cnn.ckpt={args.cnn}", "cnn.input_mask=[1,1,0]", f"cnn.stride={args.stride}",
           f"cnn.batch={args.batch}", *(["cnn.symmetric=true"] if args.symmetric else [])]
    bank = ["method=bank", f"bank_file={out / 'bank.hdf'}"]
    first_segment = f"{stream / 'foreground.hdf'}"
    plan = [
        Step("stream", stream / "injections.hdf", [*sim, f"out={stream}"]),
        Step("stream (precessing)", prec / "injections.hdf",
             [*sim, f"out={prec}", "gw/priors@simulator.priors=bbh_precessing", "simulator.approximant=IMRPhenomXPHM",
              "simulator.background=false"]),
        Step("bank placement", out / "bank.hdf",
             [*search, "method=bank", f"strain={first_segment}", "shard=0", f"n_shards={max(args.duration // 4096, 1)}",
              f"out={out / 'bank.hdf'}"]),
    ]
    for name, method in (("cnn", cnn), ("bank", bank)):
        plan += [
            Step(f"{name}: zero lag", out / f"fg_{name}.hdf", [*search, *method, f"strain={stream / 'foreground.hdf'}",
                                                               f"out={out / f'fg_{name}.hdf'}"]),
            Step(f"{name}: zero lag (precessing)", out / f"fg_{name}_precessing.hdf",
                 [*search, *method, f"strain={prec / 'foreground.hdf'}", f"out={out / f'fg_{name}_precessing.hdf'}"]),
            Step(f"{name}: {args.slides} slides", out / f"bg_{name}.hdf",
                 [*search, *method, f"strain={stream / 'background.hdf'}", f"n_slides={args.slides}",
                  f"slide={args.slide}", f"out={out / f'bg_{name}.hdf'}"]),
        ]
        for tag, injections in (("", stream), ("_precessing", prec)):
            plan.append(Step(f"{name}: evaluate{tag}", out / f"eval_{name}{tag}" / "metrics.json",
                             [*search, "mode=evaluate", f"foreground={out / f'fg_{name}{tag}.hdf'}",
                              f"background={out / f'bg_{name}.hdf'}", f"injections={injections / 'injections.hdf'}",
                              f"out_dir={out / f'eval_{name}{tag}'}", f"name={name}{tag.replace('_', ' ')}",
                              f"run_name=issue25-{name}{tag}", *(["log_mlflow=false"] if args.no_mlflow else [])]))
    return plan


def zero_lag(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    table, _ = read_triggers([path])
    zero = table["timeslide_id"] == 0
    return table["time"][zero], table["stat"][zero], table["var"][zero], table["analysed_start"], table["analysed_end"]


def background(path: Path) -> tuple[np.ndarray, float]:
    table, attrs = read_triggers([path])
    first = 0 if int(attrs.get("n_injections", 0)) == 0 else 1
    return table["stat"][table["timeslide_id"] >= first], float(table["livetime"][first:].sum())


def compare(out: Path, tag: str, far_per_day: Sequence[float], n_boot: int) -> dict[str, Any]:
    """The CNN against the bank on one injection set: ratio of sensitive distances with its bootstrap error, the
    found fraction per chirp-mass and optimal-SNR bin at the first FAR, both curves."""
    injections = out / ("stream_precessing" if tag else "stream") / "injections.hdf"
    table, attrs = read_injections([injections])
    per: dict[str, dict[str, Any]] = {}
    for name in ("cnn", "bank"):
        t, s, v, a, b = zero_lag(out / f"fg_{name}{tag}.hdf")
        per[name] = {"span": (a, b), "trig": (t, s, v)}
    inside = stats.contained(table["tc"], *per["cnn"]["span"]) & stats.contained(table["tc"], *per["bank"]["span"])
    table = {k: v[inside] for k, v in table.items()}
    inner, shell = stats.injection_volumes(table, attrs)
    result: dict[str, Any] = {"n_injections": int(inside.sum()), "ratios": {}, "curves": {}}
    for name in ("cnn", "bank"):
        bg, livetime = background(out / f"bg_{name}.hdf")
        inj = stats.injection_stats(*per[name]["trig"], table["tc"])
        per[name].update(bg=bg, livetime=livetime, inj=inj)
        result["curves"][name] = stats.sensitivity_curve(inj, bg, livetime, inner, shell)
        result[f"background_days_{name}"] = livetime / stats.DAY
    mchirp, snr = chirp_mass(table["mass1"], table["mass2"]), table["optimal_snr"]
    rows = []
    for f in far_per_day:
        ratio = stats.bootstrap_ratio(f / stats.DAY, per["cnn"]["inj"], per["cnn"]["bg"], per["cnn"]["livetime"],
                                      per["bank"]["inj"], per["bank"]["bg"], per["bank"]["livetime"], inner, shell,
                                      n_boot=n_boot)
        result["ratios"][f"{f:g}_per_day"] = None if ratio is None else {"ratio": ratio[0], "error": ratio[1]}
    f0 = far_per_day[0] / stats.DAY
    for name in ("cnn", "bank"):
        threshold = stats.threshold_at(f0, per[name]["bg"], per[name]["livetime"])
        if threshold is None:
            continue
        for quantity, values, edges in (("mchirp", mchirp, np.array([5, 10, 15, 20, 25, 30, 45, 65])),
                                        ("optimal_snr", snr, np.array([0, 4, 6, 8, 10, 12, 15, 20, 30, 1000]))):
            for row in stats.efficiency_table(per[name]["inj"], threshold, values, edges):
                rows.append({"search": name, "injections": tag.strip("_") or "aligned", "quantity": quantity, **row})
    result["efficiency"] = rows
    return result


def write_comparison(out: Path, results: dict[str, dict[str, Any]], far_per_day: Sequence[float]) -> None:
    curves = {f"{name}{' ' + tag if tag else ''}": c for tag, r in results.items() for name, c in r["curves"].items()}
    marks = {("1 per day" if abs(f - 1) < 1e-9 else "1 per week" if abs(f - 1 / 7) < 1e-9 else f"{f:g} per day"): f / stats.DAY
             for f in far_per_day}
    save_figure(stats.curve_figure(curves, marks), out / "compare.png", close=True, dpi=110)
    with open(out / "efficiency.csv", "w", newline="") as fh:
        rows = [row for r in results.values() for row in r["efficiency"]]
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    summary = {tag or "aligned": {k: v for k, v in r.items() if k not in ("curves", "efficiency")} for tag, r in results.items()}
    (out / "compare.json").write_text(json.dumps(summary, indent=2))
    for tag, r in results.items():
        week = r["ratios"].get(f"{1 / 7:g}_per_day")
        line = "not resolved (background shorter than a week)" if week is None else f"{week['ratio']:.2f} +- {week['error']:.2f}"
        print(f"sensitive distance ratio (CNN / bank) at 1 per week{' (' + tag.strip('_') + ')' if tag else ''}: {line}"
              f"  [{r['n_injections']} injections]")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", required=True, help="the two-detector network's weights (gw_1dcnn.pt or a .ckpt)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--duration", type=int, default=86400, help="s of H1/L1 strain (default one day)")
    parser.add_argument("--slides", type=int, default=100, help="time slides of the background (100: ~101 days)")
    parser.add_argument("--slide", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--stride", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--symmetric", action="store_true", help="CNN: mean over the four symmetric views (4x cost)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--plan", action="store_true", help="print the commands and the cost estimate; run nothing")
    parser.add_argument("--templates", type=int, default=1855, help="--plan: the bank size assumed in the estimate (1,855: the 8-s placement, measured)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    plan = steps(args)
    hours = args.duration / 3600
    cost = cost_estimate(hours, args.slides, args.templates)
    print(f"# {len(plan)} steps; wall estimate on the 2-core development CPU (quiet, 2 threads; docs/gw.md): "
          + ", ".join(f"{k} {v:.1f} h" for k, v in cost.items()) + f" (a bank of {args.templates} templates assumed)")
    for step in plan:
        done = step.output.exists()
        print(f"# {step.name}{' (done)' if done else ''}\n{shlex.join(step.argv)}")
        if args.plan or done:
            continue
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        subprocess.run(step.argv, check=True, env=env)
    if args.plan:
        return
    far_per_day = (1 / 7, 1.0)
    results = {tag: compare(out, tag, far_per_day, args.bootstrap) for tag in ("", "_precessing")}
    write_comparison(out, results, far_per_day)


if __name__ == "__main__":
    main()
