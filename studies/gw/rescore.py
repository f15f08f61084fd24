"""Score finished `studies.gw.cnn_vs_matched_filter` networks on another test set, such as a ten times larger one.

On the 4,000-sample test set the DeLong error of the CNN's gap to the true-template matched filter is ~0.003,
larger than a miss of 0.001, so a verdict that close needs more test samples. This script re-scores saved runs on
a test bundle written by studies.gw.injections (another seed, the same simulator and preprocessing configs):

    python -m studies.gw.injections --n-train 20 --k-train 4 --n-test 40000 --k-test 6000 --seed 2026 --noise-seed 2027 --out .gwbundle/test40k.npz
    python -m studies.gw.rescore RUN_DIR... --test-bundle .gwbundle/test40k.npz --out outputs/rescored
    python -m studies.gw.ensemble outputs/rescored/*

Each network is read from its run folder (gw_1dcnn.pt, net config and precision in its report). The
whitener is fitted again exactly as in training: the noise-only rows among the first n_train training samples of
the run's own bundle, re-built from the same seeds. So the scores are the ones the run would have given on this set.
Per run it writes OUT/<run>/ a run folder of the same layout (report and gw_test_scores.npz), which `ensemble` reads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detsim.gw.whiten import Whitener

from studies.gw.auc_gap import configured_view, report_scores
from studies.gw.cnn_training import cnn_test_scores, network_of
from studies.gw.cnn_vs_matched_filter import REPORT, SCORES, WEIGHTS
from studies.gw.samples import Bundle, rebuild_split, whitener_of
from studies.gw.templates import matched_filter_scores

MATCHING = ("simulator", "preprocessing")   # what must agree for the test set to be drawn like the training set


def check_drawn_alike(train: Bundle, test: Bundle, train_path: str, test_path: str) -> None:
    """Refuse a test bundle whose simulator or preprocessing config differs from the training bundle's."""
    for section in MATCHING:
        if train.meta[section] != test.meta[section]:
            keys = sorted(k for k in set(train.meta[section]) | set(test.meta[section])
                          if train.meta[section].get(k) != test.meta[section].get(k))
            raise ValueError(f"{test_path} is not drawn like {train_path}: their {section} configs differ in {keys}")


def training_whitener(bundle: Bundle, n_train: int, workers: int) -> Whitener:
    """The whitener a run on `bundle` fitted: on the noise-only rows among its first n_train training samples."""
    raw, _ = rebuild_split(bundle, "train", n_train, workers, progress=False)
    return whitener_of(bundle, raw[bundle.arrays["train_target"][:n_train] == 0])


def run_whitener(report: dict[str, Any], train_path: str, n_train: int, test: Bundle, test_path: str,
                 workers: int) -> Whitener:
    """The whitener a run (its report) fitted, after checking that `test` is drawn like the run's training bundle."""
    train = Bundle.load(train_path)
    check_drawn_alike(train, test, train_path, test_path)
    if report.get("preprocessing"):   # the run's `--preprocessing` overrides (recorded since 2026-11-27)
        train = Bundle(train.arrays, {**train.meta, "preprocessing": report["preprocessing"]})
    return training_whitener(train, n_train, workers)


def load_network(run_dir: Path, report: dict[str, Any]) -> torch.nn.Module:
    net = network_of(report["net"])
    net.load_state_dict(torch.load(run_dir / WEIGHTS, map_location="cpu", weights_only=True))
    return net


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders of studies.gw.cnn_vs_matched_filter")
    ap.add_argument("--test-bundle", required=True, help="bundle whose test split scores the networks")
    ap.add_argument("--train-bundle", default=None, help="the runs' training bundle (default: as in their reports)")
    ap.add_argument("--n-test", type=int, default=0, help="use the first n test samples (0: all)")
    ap.add_argument("--workers", type=int, default=2, help="rebuild processes")
    ap.add_argument("--bank", action="store_true", help="also score the bundle's template bank (minutes per 1,000 samples)")
    ap.add_argument("--target", type=float, default=0.02, help="allowed AUC shortfall of the CNN vs the MF")
    ap.add_argument("--out", type=Path, default=Path("outputs/gw_rescored"))
    args = ap.parse_args(argv)
    for run_dir in args.runs:
        if not (run_dir / REPORT).is_file() or not (run_dir / WEIGHTS).is_file():
            raise FileNotFoundError(f"{run_dir} is not a cnn_vs_matched_filter run folder: needs {REPORT} and {WEIGHTS}")
    test = Bundle.load(args.test_bundle)
    n_test = min(args.n_test or test.size("test"), test.size("test"))
    t0 = time.perf_counter()
    raw_test, snr = rebuild_split(test, "test", n_test, args.workers)
    target = test.arrays["test_target"][:n_test].astype(np.float32)
    print(f"test set: {n_test} samples of {len(test.arrays['test_wave_peak'])} binaries rebuilt in {time.perf_counter() - t0:.0f} s")
    fitted: dict[tuple[str, int, str], tuple[Any, dict[str, np.ndarray]]] = {}   # whitened test set, MF scores
    results = {}
    for run_dir in args.runs:
        report = json.loads((run_dir / REPORT).read_text())
        train_path, n_train = args.train_bundle or report["bundle"], int(report["training"]["n_train"])
        key = (train_path, n_train, json.dumps(report.get("preprocessing"), sort_keys=True))
        if key not in fitted:
            whitener = run_whitener(report, train_path, n_train, test, args.test_bundle, args.workers)
            mf = matched_filter_scores(test, whitener, raw_test, "cpu", bank=args.bank)
            fitted[key] = (torch.as_tensor(whitener(raw_test)), mf)
        x_test, mf = fitted[key]
        net, precision = load_network(run_dir, report), report["training"].get("precision", "32")
        scores = {**cnn_test_scores(net, x_test, 1024, precision, progress=f"{run_dir.name}: four symmetric views"), **mf}
        cnn_key = configured_view(test.meta["model"])   # the test bundle's (current) model config
        summary = report_scores(scores, target, snr, test.meta["model"], cnn_key, args.target,
                                f"{run_dir} on {args.test_bundle} ({n_test} samples), CNN ({cnn_key})")
        out = args.out / run_dir.name
        out.mkdir(parents=True, exist_ok=True)
        rescored = {"bundle": str(args.test_bundle), "rescored_from": str(run_dir), "train_bundle": train_path,
                    "net": report["net"], "training": report["training"], "n_test": n_test, "cnn": cnn_key, **summary}
        (out / REPORT).write_text(json.dumps(rescored, indent=1, default=float))
        np.savez(out / SCORES, **scores, target=target, snr=snr)
        results[str(run_dir)] = rescored
    return results


if __name__ == "__main__":
    main()
