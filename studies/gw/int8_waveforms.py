"""The training waveforms of a bundle (`studies.gw.injections`) rounded to int8, so it travels to a GPU machine
that takes ~64 MiB; and what the rounding costs in SNR.

Packing makes a bundle small enough to travel to a GPU machine that takes ~64 MiB.

The 60k bundle is 110 MiB, 102 of them the training binaries' face-on h+ in float16. Packing stores those as
int8 with a scale per binary, and the training samples' parameters in float32; the test split, the PSDs and
the configs stay bit for bit, so runs on the packed bundle are scored on the very test set of the full one
and can be averaged with them (`studies.gw.ensemble`). `--drop-bank` leaves out the template bank
(the bank search is scored elsewhere; `cnn_vs_matched_filter --no-bank`).

Rounding h+ to 1/254 of its peak adds white noise far below the detector's: the script prints the optimal SNR
of the difference (packed - full) of rebuilt training signals, at their injected SNR, so the cost is measured
for each pack, not assumed.

    python -m studies.gw.int8_waveforms .gwbundle/bundle60k.npz .gwbundle/bundle60k_int8.npz --drop-bank
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from detsim.gw.noise import optimal_snr

from studies.gw.samples import Bundle, rebuild_signal

INT8_PEAK = 127


def pack_arrays(arrays: dict[str, np.ndarray], drop_bank: bool = False) -> dict[str, np.ndarray]:
    """The bundle's arrays with the training waveforms as int8 (+ `train_wave_scale`) and training
    parameters in float32; everything else unchanged."""
    packed = {k: v for k, v in arrays.items() if not (drop_bank and k.startswith("bank_"))}
    data, offset = arrays["train_wave_data"].astype(np.float32), arrays["train_wave_offset"]
    scale = np.array([np.abs(data[a:b]).max() / INT8_PEAK for a, b in itertools.pairwise(offset)], dtype=np.float32)
    per_sample = np.repeat(scale, np.diff(offset))
    packed["train_wave_data"] = np.round(data / per_sample).astype(np.int8)
    packed["train_wave_scale"] = scale
    for key, value in arrays.items():
        if key.startswith("train_") and value.dtype == np.float64 and not key.startswith("train_wave"):
            packed[key] = value.astype(np.float32)
    return packed


def rounding_snr(full: Bundle, packed: Bundle, n: int) -> np.ndarray:
    """Network optimal SNR of (packed - full) rebuilt signal for the first n labelled training samples."""
    fs, f_low = float(full.sim["sample_rate"]), float(full.sim["snr_f_lower"])
    rows = np.flatnonzero(full.arrays["train_target"] == 1)[:n]
    out = []
    for i in rows:
        diff = rebuild_signal(packed, "train", int(i))[0] - rebuild_signal(full, "train", int(i))[0]
        out.append(np.sqrt(sum(optimal_snr(d, psd, fs, f_low) ** 2 for d, psd in zip(diff, full.psds("snr")))))
    return np.array(out)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="bundle written by studies.gw.injections")
    ap.add_argument("out", type=Path, help="packed bundle to write (.npz)")
    ap.add_argument("--drop-bank", action="store_true", help="leave out the template bank")
    ap.add_argument("--check", type=int, default=200, help="labelled training samples whose rounding SNR is measured")
    args = ap.parse_args(argv)
    if not args.bundle.is_file():
        raise FileNotFoundError(f"{args.bundle}: no such bundle (write one with studies.gw.injections)")
    full = Bundle.load(args.bundle)
    if full.arrays["train_wave_data"].dtype == np.int8:
        raise ValueError(f"{args.bundle} is packed already")
    with np.load(args.bundle) as data:
        config_json = data["config_json"]
    arrays = pack_arrays(full.arrays, args.drop_bank)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays, config_json=config_json)
    packed = Bundle.load(args.out)
    err = rounding_snr(full, packed, args.check)
    sizes = {"full_mib": args.bundle.stat().st_size / 2**20, "packed_mib": args.out.stat().st_size / 2**20,
             "rounding_snr_median": float(np.median(err)), "rounding_snr_max": float(err.max())}
    print(f"{args.out}: {sizes['packed_mib']:.1f} MiB (from {sizes['full_mib']:.1f}); optimal SNR of the rounding error "
          f"over {len(err)} training signals at their injected SNR: median {sizes['rounding_snr_median']:.4f}, "
          f"max {sizes['rounding_snr_max']:.4f}")
    return sizes


if __name__ == "__main__":
    main()
