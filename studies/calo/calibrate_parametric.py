"""Research script: compare the parametric simulator (`simulator=calo`) with Geant4 showers, per energy bin.

Prints, for Geant4 and for parametric showers made at the *same* incident energies, per incident-energy
bin: E_tot/E_inc mean and rms (with statistical errors), the non-zero voxel fraction, quantiles of the
hottest voxel / E_inc, the energy fraction per layer (longitudinal profile, summarised) and per ring
(radial profile). Features come from `detsim.eval.features.ShowerFeatures` (E_tot/E_inc, layer
energies, sparsity); only the ring sums, which no feature provides, are summed here.

  python -m studies.calo.calibrate_parametric geant4=/work/g4data/g4_ds2_e_1_100gev_train_n2000_s1.h5 \
      [n=1000] [seed=7] [json=table.json] [write=param.h5] [detector.threshold_MeV=0.66 ...]

Every `key=value` that is not one of geant4/n/seed/json/write/geometry/particle is passed on as a
`detsim-simulate` override, so a candidate calibration is tried without editing config. `write=` also
writes the parametric showers (at Geant4's energies) for `detsim-evaluate reference=<geant4> generated=<write>`.
Geant4 files made with stand-in data sets (file attr geant4_data = 'stand-in') are labelled as such.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")  # the Geant4 production may still hold its file

BINS_GEV = ((1.0, 3.0), (3.0, 10.0), (10.0, 30.0), (30.0, 100.0))
HOT_QUANTILES = (0.1, 0.5, 0.9)


def summarise(showers: Any, geometry: Any, bins: tuple[tuple[float, float], ...] = BINS_GEV) -> list[dict[str, Any]]:
    """Per energy bin: the calibration figures (means, rms, profiles) of one shower set."""
    from detsim.eval.features import ShowerFeatures

    feats = ShowerFeatures(geometry)(showers)  # threshold 0: sparsity = fraction of zero voxels
    layer_ids = geometry.layer_ids
    e_layer = np.stack([feats[f"e_layer_{i}"] for i in layer_ids], axis=1)
    sparsity = np.stack([feats[f"sparsity_{i}"] for i in layer_ids], axis=1)
    cells = np.diff(geometry.layer_offsets)
    nonzero = 1.0 - (sparsity * cells).sum(axis=1) / cells.sum()
    ring = geometry.voxel_cell_index[1]
    n_r = int(ring.max()) + 1
    e_ring = np.stack([showers.showers[:, ring == k].sum(axis=1, dtype=np.float64) for k in range(n_r)], axis=1)
    e_inc = showers.incident_energy.astype(np.float64)
    hottest = showers.showers.max(axis=1) / e_inc
    positive = showers.showers[showers.showers > 0]
    depth = np.arange(len(layer_ids))
    rows = []
    for lo, hi in bins:
        sel = (e_inc >= lo * 1e3) & (e_inc < hi * 1e3)
        n = int(sel.sum())
        if n < 2:
            rows.append({"bin_GeV": [lo, hi], "n": n})
            continue
        resp = feats["etot_einc"][sel]
        tot = e_layer[sel].sum(axis=1, keepdims=True)
        lfrac = (e_layer[sel] / np.maximum(tot, 1e-12)).mean(axis=0)
        rfrac = (e_ring[sel] / np.maximum(tot, 1e-12)).mean(axis=0)
        mean_depth = (e_layer[sel] * depth).sum(axis=1) / np.maximum(tot[:, 0], 1e-12)
        rms = resp.std(ddof=1)
        rows.append({
            "bin_GeV": [lo, hi],
            "n": n,
            "response_mean": float(resp.mean()),
            "response_mean_err": float(rms / np.sqrt(n)),
            "response_rms_rel": float(rms / resp.mean()),
            "response_rms_rel_err": float(rms / resp.mean() / np.sqrt(2 * (n - 1))),
            "nonzero_fraction": float(nonzero[sel].mean()),
            "nonzero_fraction_err": float(nonzero[sel].std(ddof=1) / np.sqrt(n)),
            "hottest_over_einc_q": [float(v) for v in np.quantile(hottest[sel], HOT_QUANTILES)],
            "layer_fraction": lfrac.tolist(),
            "first_layer_fraction": float(lfrac[0]),
            "first_layer_fraction_err": float((e_layer[sel, 0] / tot[:, 0]).std(ddof=1) / np.sqrt(n)),
            "layer_of_max": int(np.argmax(lfrac)),
            "mean_depth_layers": float(mean_depth.mean()),
            "mean_depth_rms": float(mean_depth.std(ddof=1)),
            "tail_fraction_layers_ge_20": float(lfrac[20:].sum()),
            "ring_fraction": rfrac.tolist(),
        })
    rows.append({"smallest_nonzero_MeV": float(positive.min()) if positive.size else float("nan")})
    return rows


def _fmt(a: dict[str, Any], key: str, fmt: str) -> str:
    return format(a[key], fmt) if key in a else "-"


def print_table(tables: dict[str, list[dict[str, Any]]], out: Any = sys.stdout) -> None:
    """One block per energy bin, one column per shower set."""
    names = list(tables)
    first = tables[names[0]]
    for b in range(len(first) - 1):
        lo, hi = first[b]["bin_GeV"]
        print(f"\n== {lo:g}-{hi:g} GeV (n = {', '.join(str(tables[k][b]['n']) for k in names)}) ==", file=out)
        print(f"{'':28s}" + "".join(f"{k:>30s}" for k in names), file=out)
        lines = [
            ("E_tot/E_inc mean", lambda r: f"{_fmt(r, 'response_mean', '.4f')} +- {_fmt(r, 'response_mean_err', '.4f')}"),
            ("E_tot/E_inc rms/mean", lambda r: f"{_fmt(r, 'response_rms_rel', '.4f')} +- {_fmt(r, 'response_rms_rel_err', '.4f')}"),
            ("non-zero voxel fraction", lambda r: f"{_fmt(r, 'nonzero_fraction', '.4f')} +- {_fmt(r, 'nonzero_fraction_err', '.4f')}"),
            ("hottest/E_inc q10,50,90", lambda r: " ".join(f"{v:.3f}" for v in r.get("hottest_over_einc_q", []))),
            ("first-layer fraction", lambda r: f"{_fmt(r, 'first_layer_fraction', '.5f')} +- {_fmt(r, 'first_layer_fraction_err', '.5f')}"),
            ("layer of profile maximum", lambda r: _fmt(r, "layer_of_max", "d")),
            ("mean depth (layers), rms", lambda r: f"{_fmt(r, 'mean_depth_layers', '.2f')}, {_fmt(r, 'mean_depth_rms', '.2f')}"),
            ("fraction in layers >= 20", lambda r: _fmt(r, "tail_fraction_layers_ge_20", ".5f")),
        ]
        for label, f in lines:
            print(f"{label:28s}" + "".join(f"{f(tables[k][b]):>30s}" for k in names), file=out)
        for what, key, step in (("layer", "layer_fraction", 1), ("ring", "ring_fraction", 1)):
            n_items = len(first[b].get(key, []))
            idx = range(0, n_items, step) if what == "ring" else [0, 1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40]
            for i in idx:
                vals = "".join(f"{tables[k][b][key][i]:>30.5f}" if key in tables[k][b] else f"{'-':>30s}" for k in names)
                print(f"  {what} {i:2d} energy fraction    {vals}", file=out)
    print("\nsmallest non-zero voxel (MeV): " + ", ".join(f"{k} {tables[k][-1]['smallest_nonzero_MeV']:.4f}" for k in names), file=out)


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    own = {"geant4", "n", "seed", "json", "write", "geometry", "particle"}
    args, overrides = {}, []
    for item in argv:
        key, _, value = item.partition("=")
        (args.__setitem__(key, value) if key in own else overrides.append(item))
    if "geant4" not in args:
        raise SystemExit("usage: python -m studies.calo.calibrate_parametric geant4=<file or glob> [n=] [seed=] [json=] [write=] [overrides]")
    return args, overrides


def main(argv: list[str]) -> dict[str, Any]:
    import h5py

    from detsim.geometry import load_geometry
    from detsim.io import read_showers, write_showers
    from detsim.paths import config_dir
    from detsim.sim import quick_sample

    args, overrides = _parse(argv)
    geometry_name = args.get("geometry", "calochallenge_ds2")
    geometry = load_geometry(config_dir() / "geometry" / f"{geometry_name}.yaml")
    g4 = read_showers(args["geant4"])
    n = min(int(args.get("n", len(g4))), len(g4))
    g4 = g4[:n]
    with h5py.File(sorted(Path().glob(args["geant4"]))[0] if "*" in args["geant4"] else args["geant4"], "r") as f:
        origin = str(f.attrs.get("geant4_data", "unknown"))
    label = "geant4 (stand-in data)" if origin == "stand-in" else f"geant4 ({origin} data)"
    param = quick_sample(geometry_name, args.get("particle", "electron"), seed=int(args.get("seed", 7)),
                         energies=g4.incident_energy, overrides=overrides)
    tables = {label: summarise(g4, geometry), "parametric": summarise(param, geometry)}
    print(f"{n} showers each; parametric overrides: {overrides or 'none'}")
    print_table(tables)
    if "json" in args:
        Path(args["json"]).write_text(json.dumps({"overrides": overrides, "n": n, "tables": tables}, indent=1))
    if "write" in args:
        write_showers(args["write"], param, attrs={"geometry": geometry_name, "overrides": " ".join(overrides)})
    return tables


if __name__ == "__main__":
    main(sys.argv[1:])
