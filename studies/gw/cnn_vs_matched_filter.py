"""The G2Net accuracy study on a machine without pycbc: rebuild a synthetic train/test set from a bundle
(`studies.gw.injections`) with numpy, train the 1D CNN through `GWClassifier` and Lightning for a time budget, and
compare its test ROC AUC with the matched filter's with true templates (target: CNN within 0.02).

Imports only numpy/scipy/torch/lightning/rich/h5py and detsim modules that need nothing else, so it runs on a
GPU machine with no pycbc, Hydra or MLflow:
    python -m studies.gw.cnn_vs_matched_filter --bundle .gwbundle/bundle.npz --device cuda --minutes 6 --out $OUT

Whitening is `Whitener` fitted on the noise-only training samples; the matched filter is
`MatchedFilter.own_template_scores` fed with each sample's bundled binary (noise-only samples use their
drawn-but-not-injected binary). The run folder holds REPORT (settings, timings, AUCs, the verdict), SCORES (every
detector's test statistic with `target` and `snr`) and WEIGHTS (the network), read by `ensemble` and `rescore`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studies.gw.auc_gap import configured_view, report_scores
from studies.gw.cnn_training import cnn_test_scores, initial_weights, train_cnn
from studies.gw.redraw import Redrawer
from studies.gw.samples import Bundle, rebuild_sample, rebuild_split, whitener_of
from studies.gw.templates import matched_filter_scores

REPORT, SCORES, WEIGHTS = "gw_cnn_vs_matched_filter.json", "gw_test_scores.npz", "gw_1dcnn.pt"


def run(args: argparse.Namespace) -> dict[str, Any]:
    bundle = Bundle.load(args.bundle)
    if args.net:   # architecture overrides of the bundled conf/model/gw_1dcnn.yaml `net`
        bundle.meta["model"]["net"].update(json.loads(args.net))
    if args.lr:   # e.g. a smaller learning rate to continue from --init
        bundle.meta["model"]["lr"] = args.lr
    init = initial_weights(args.init, bundle.meta["model"]["net"]) if args.init else None
    if args.preprocessing:   # overrides of the bundled conf/gw/preprocessing (the Whitener)
        bundle.meta["preprocessing"].update(json.loads(args.preprocessing))
    n_all = min(args.n_train or bundle.size("train"), bundle.size("train"))
    n_test = min(args.n_test or bundle.size("test"), bundle.size("test"))
    n_val = int(round(n_all * float(bundle.meta["data"]["val_fraction"])))
    n_train = n_all - n_val
    report: dict[str, Any] = {"bundle": str(args.bundle), "device": args.device, "workers": args.workers,
                              "torch": torch.__version__, "net": bundle.meta["model"]["net"],
                              "preprocessing": bundle.meta["preprocessing"], "decoys": args.decoys,
                              "decoy_window": args.decoy_window}

    first_set = bundle     # the training rows of the first epochs; re-draws start again from `bundle`
    if args.decoys:
        t_low = float(bundle.sim["priors"]["t_merger"]["low"])
        window = args.decoy_window or [0.3, t_low - 0.1]
        if not 0.0 <= window[0] < window[1] <= t_low:
            raise SystemExit(f"--decoy-window {window} must lie before the prior's earliest merger ({t_low} s)")
        bundle.meta["decoys"] = {"fraction": args.decoys, "window": window}
        first_set = bundle.with_decoys(n_train)     # validation keeps the test's distribution
    t0 = time.perf_counter()
    raw_train, _ = rebuild_split(first_set, "train", n_all, args.workers, parts=args.remix)
    raw_test, snr_test = rebuild_split(bundle, "test", n_test, args.workers)
    dt = time.perf_counter() - t0
    report["synthesis"] = {"samples": n_all + n_test, "seconds": dt, "samples_per_s": (n_all + n_test) / dt,
                           "samples_per_s_per_core": (n_all + n_test) / dt / args.workers}
    print(f"rebuild: {n_all + n_test} samples in {dt:.1f} s with {args.workers} processes "
          f"= {(n_all + n_test) / dt / args.workers:.1f} samples/s per core (numpy part only; pycbc part in the bundle)")

    t0 = time.perf_counter()
    y_all = bundle.arrays["train_target"][:n_all].astype(np.float32)
    y_test = bundle.arrays["test_target"][:n_test].astype(np.float32)
    pool = None
    if args.remix:   # noise and signal apart: whitening is linear, so whiten each and add them as needed
        noise, signal = raw_train[:, 0], raw_train[:, 1]
        whitener = whitener_of(bundle, noise[:n_train][y_all[:n_train] == 0])
        pool, white_signal = whitener(noise[:n_train]), whitener(signal)
        x_all = white_signal.copy()
        x_all[n_train:] += whitener(noise[n_train:])  # validation keeps its own fixed noise
        x_test = whitener(raw_test)
    else:
        rows = np.flatnonzero(y_all[:n_train] == 0)
        noise = raw_train[rows]
        if args.decoys:   # decoy rows carry a signal: fit on their noise alone, as a run without decoys (and a rescore) does
            for j in np.flatnonzero(first_set.arrays["train_decoy"][rows]):
                noise[j] = rebuild_sample(bundle, "train", int(rows[j]))[0]
        whitener = whitener_of(bundle, noise)
        del noise
        x_all, x_test = whitener(raw_train), whitener(raw_test)
    del raw_train
    report["whitening_seconds"] = time.perf_counter() - t0
    print(f"whitening: fit on {int(np.sum(y_all[:n_train] == 0))} noise-only training samples, applied to "
          f"{n_all + n_test} in {report['whitening_seconds']:.1f} s")

    redraw = Redrawer(bundle, n_train, whitener, args.redraw, args.workers) if args.redraw else None
    if args.device.startswith("cuda"):   # after every fork of rebuild processes
        report["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        net, training = train_cnn(bundle.meta["model"], x_all[:n_train], y_all[:n_train], x_all[n_train:], y_all[n_train:],
                                  args.device, args.minutes, args.max_epochs, args.batch_size, args.seed,
                                  noise_pool=pool, precision=args.precision, redraw=redraw, redraw_every=args.redraw,
                                  init=init)
    finally:
        if redraw is not None:
            redraw.close()
    training.update(remix=bool(args.remix), redraw_every=args.redraw, precision=args.precision, init=args.init,
                    lr=float(bundle.meta["model"]["lr"]))
    if redraw is not None:
        training.update(redraws=redraw.draws, redraw_wait_seconds=redraw.waited)
    training.update(n_train=n_train, n_val=n_val, batch_size=args.batch_size)
    report["training"] = training
    print(f"training: {n_train} samples x {training['epochs']} epochs in {training['seconds']:.1f} s = "
          f"{training['samples_per_s']:.0f} samples/s on {args.device} (incl. validation); best epoch "
          f"{training['best_epoch']} (val AUC {training['best_val_auc']:.4f})"
          + (f"; {redraw.draws} re-draws, {redraw.waited:.1f} s waited for them" if redraw is not None else ""))

    x_test = torch.as_tensor(x_test, device=args.device)
    scores = cnn_test_scores(net, x_test, 1024, args.precision)
    t1 = time.perf_counter()
    scores.update(matched_filter_scores(bundle, whitener, raw_test, args.device, bank=not args.no_bank))
    report["matched_filter_seconds"] = time.perf_counter() - t1
    cnn_key = configured_view(bundle.meta["model"])
    summary = report_scores(scores, y_test, snr_test, bundle.meta["model"], cnn_key, args.target,
                            f"test set {n_test} samples ({len(bundle.arrays['test_wave_peak'])} binaries unseen in "
                            f"training), CNN ({cnn_key}) trained on {n_train}")
    print(f"symmetric views averaged: CNN AUC {summary['auc']['cnn_symmetric']:.4f} (one view: {summary['auc']['cnn']:.4f})")
    report.update(n_test=n_test, cnn=cnn_key, **summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(json.dumps(report, indent=1, default=float))
    np.savez(out / SCORES, **scores, target=y_test, snr=snr_test)
    torch.save(net.state_dict(), out / WEIGHTS)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=".gwbundle/bundle.npz")
    ap.add_argument("--out", default="outputs/gw_cnn_vs_matched_filter")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--minutes", type=float, default=6.0, help="training time budget (sets the number of epochs)")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=0, help="use the first n training samples (0: all; val is held out of them)")
    ap.add_argument("--n-test", type=int, default=0, help="use the first n test samples (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rebuild processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.02, help="allowed AUC shortfall of the CNN vs the MF")
    ap.add_argument("--net", default="", help='JSON overrides of the model\'s net, e.g. \'{"head_kernels": [7, 7, 7]}\'')
    ap.add_argument("--preprocessing", default="", help='JSON overrides of the Whitener, e.g. \'{"output_rate": 1024}\'')
    ap.add_argument("--remix", action="store_true",
                    help="pair each training signal with a random noise segment of the training pool in every batch")
    ap.add_argument("--no-bank", action="store_true", help="skip the template-bank matched filter (minutes on a CPU)")
    ap.add_argument("--precision", choices=("32", "bf16"), default="32", help="bf16: autocast (CPU with AVX512-BF16, or GPU)")
    ap.add_argument("--redraw", type=int, default=0, metavar="N",
                    help="every N epochs, re-draw the training samples' extrinsic parameters and noise (0: off)")
    ap.add_argument("--decoys", type=float, default=0.0, metavar="FRACTION",
                    help="share of noise-only training rows given a signal with its merger outside the prior's window, "
                         "labelled noise (Bundle.with_decoys); 0: none")
    ap.add_argument("--decoy-window", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                    help="merger times of the decoys in seconds (default: 0.3 s to 0.1 s before the prior's earliest)")
    ap.add_argument("--init", default=None, metavar="RUN_DIR", help="continue from the weights of a finished run")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the model config's)")
    args = ap.parse_args(argv)
    if args.remix and args.redraw:
        ap.error("--remix and --redraw are alternatives: choose one")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main() -> None:
    run(parse_args())


if __name__ == "__main__":
    main()
