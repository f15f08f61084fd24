"""Place the stochastic template bank and score the search a real analysis runs, next to the CNNs.

The true-template matched filter (issue 5's bound) knows each source's masses and spins. A detector that does
not (a CNN, or a search) must look through the whole prior, and pays for it: more noise excursions look like
signals (the trials factor), and templates that miss a signal keep only a fraction of its SNR. This script measures
how far a well-covered search gets, so the CNN's shortfall can be split into what any search loses and what the
network loses:

    python -m studies.gw.bank_search --compare outputs/rescored/* --n-test 10000 --out outputs/gw_bank_search

It fits the whitener exactly as the compared runs did (their training bundle and n_train, as `rescore` does),
places the bank of conf/gw/bank/<--bank> (progress shown), reports its coverage (fitting factors of test binaries
per chirp-mass bin, for it and the grid bank), and scores the first --n-test test samples with the true templates,
the bank's max and its marginalised statistic, with uniform and with prior-mass template weights. With --compare it adds the runs' mean CNN score (symmetric views)
and prints DeLong differences between every pair that matters. Writes OUT/gw_bank_search.json, the bank as
OUT/bank.csv and the scores as OUT/gw_test_scores.npz.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from detsim.gw.matched_filter import marginalised
from detsim.gw.priors import draw_parameters
from detsim.gw.report import format_table, snr_binned_table
from detsim.gw.template_bank import (bank_parameters, best_templates, chirp_mass, fitting_factors, place_bank,
                                     prior_log_weights, unit_spectra)
from detsim.paths import config_dir

from studies.gw.auc_gap import report_scores
from studies.gw.combine import CHIRP_EDGES, add_combination, differences
from studies.gw.ensemble import RunScores, chirp_mass_table, chirp_masses_of_test_set, ensemble_scores
from studies.gw.rescore import run_whitener
from studies.gw.samples import Bundle, rebuild_split
from studies.gw.templates import matched_filter, matched_filter_scores, template_waves


def bank_config(name: str, overrides: Sequence[str]) -> dict[str, Any]:
    path = config_dir() / "gw" / "bank" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no bank config {path}; choose one of {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides))))


def coverage_table(factors: dict[str, np.ndarray], mchirp: np.ndarray, minimal_match: float) -> list[dict[str, Any]]:
    """Median, 10th percentile and fraction below `minimal_match` of each bank's fitting factors, per chirp-mass bin."""
    rows = []
    bins = [("all", np.ones(len(mchirp), bool))] + [
        (f"{lo:g}-{hi:g}", (mchirp >= lo) & (mchirp < hi)) for lo, hi in zip(CHIRP_EDGES[:-1], CHIRP_EDGES[1:])]
    for name, ff in factors.items():
        for label, sel in bins:
            if sel.any():
                rows.append({"bank": name, "mchirp": label, "n": int(sel.sum()), "median": float(np.median(ff[sel])),
                             "p10": float(np.percentile(ff[sel], 10)), "below_mm": float(np.mean(ff[sel] < minimal_match))})
    return rows


def print_coverage(rows: list[dict[str, Any]], minimal_match: float) -> None:
    print(f"{'bank':<14}{'Mchirp':>8}{'n':>6}{'FF median':>11}{'FF p10':>9}{f'< {minimal_match:g}':>9}")
    for r in rows:
        print(f"{r['bank']:<14}{r['mchirp']:>8}{r['n']:>6}{r['median']:>11.4f}{r['p10']:>9.4f}{r['below_mm']:>9.3f}")


def coverage_report(test: Bundle, mf: Any, spectra: Any, name: str, n_binaries: int,
                    minimal_match: float) -> list[dict[str, Any]]:
    """Fitting factors of the first test binaries with the bank and with the grid bank, printed and returned."""
    n = int(test.meta["n_samples"])
    n_lags = mf._lags(n)[0]
    n_cov = min(n_binaries, len(test.arrays["test_wave_peak"]))
    signals = mf._spectra(template_waves(test, "test", range(n_cov)), n)
    grid = unit_spectra(mf.template_spectra(bank_parameters(bank_config("grid", []), test.sim["priors"]), n))
    intrinsic = test.arrays["test_wave_intrinsic"][:n_cov].astype(np.float64)
    rows = coverage_table({name: fitting_factors(signals, spectra, n_lags, progress=f"coverage of {name}"),
                           f"grid ({len(grid)})": fitting_factors(signals, grid, n_lags, progress="coverage of the grid")},
                          chirp_mass(intrinsic[:, 0], intrinsic[:, 1]), minimal_match)
    print(f"coverage: fitting factors of {n_cov} test binaries (match of the best template, worst detector)")
    print_coverage(rows, minimal_match)
    return rows


def prior_weights(test: Bundle, mf: Any, spectra: Any, n_draws: int, seed: int) -> np.ndarray:
    """ln prior mass of each template: its share of `n_draws` prior draws that it matches best."""
    n = int(test.meta["n_samples"])
    rng = np.random.default_rng(seed)
    draws = unit_spectra(mf.template_spectra([draw_parameters(test.sim["priors"], rng) for _ in range(n_draws)], n))
    best = best_templates(draws, spectra, mf._lags(n)[0], progress=f"prior weights ({n_draws} draws)")[1]
    return prior_log_weights(best, len(spectra))


def ensemble_cnn(runs: list[RunScores], n_test: int, target: np.ndarray, test_path: str) -> np.ndarray:
    """The runs' mean CNN score (symmetric views) on the first n_test samples, checked to be of this test set."""
    members = [RunScores(r.path, r.report, {k: v[:n_test] for k, v in r.scores.items()}) for r in runs]
    if not np.array_equal(members[0].scores["target"], target):
        raise ValueError(f"{runs[0].path} scored another test set than {test_path}")
    return ensemble_scores(members)["cnn_ensemble"]


def write_outputs(out: Path, report: dict[str, Any], bank: list[dict[str, float]], arrays: dict[str, np.ndarray]) -> None:
    """OUT/gw_bank_search.json (the report), OUT/bank.csv (the templates), OUT/gw_test_scores.npz (scores, target, snr)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gw_bank_search.json").write_text(json.dumps(report, indent=1, default=float))
    with (out / "bank.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(bank[0]))
        writer.writeheader()
        writer.writerows(bank)
    np.savez(out / "gw_test_scores.npz", **arrays)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", nargs="*", default=[], help="run folders of `rescore` or `cnn_vs_matched_filter` scored "
                    "on the test bundle: their mean CNN score joins the comparison and sets the defaults below")
    ap.add_argument("--test-bundle", default=None, help="bundle whose test split is scored (default: the runs')")
    ap.add_argument("--train-bundle", default=None, help="bundle whose noise fits the whitener (default: the runs')")
    ap.add_argument("--n-train", type=int, default=0, help="training rows the whitener is fitted on (default: the runs')")
    ap.add_argument("--n-test", type=int, default=0, help="score the first n test samples (0: all; ~0.2 s each on 2 cores)")
    ap.add_argument("--bank", default="default", help="conf/gw/bank/<name>")
    ap.add_argument("--bank-override", nargs="*", default=[], help="e.g. minimal_match=0.95 n_candidates=4000")
    ap.add_argument("--coverage", type=int, default=1000, help="test binaries whose fitting factors are measured")
    ap.add_argument("--prior-draws", type=int, default=4000, help="prior draws that weight the templates of the "
                    "marginalised statistic by their prior mass (`mf_bank<K>_prior`; 0: uniform weights only)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the prior draws")
    ap.add_argument("--workers", type=int, default=2, help="rebuild processes")
    ap.add_argument("--out", type=Path, default=Path("outputs/gw_bank_search"))
    args = ap.parse_args(argv)
    runs = [RunScores.load(path) for path in args.compare]
    first = runs[0].report if runs else {}
    test_path = args.test_bundle or first.get("bundle")
    train_path = args.train_bundle or first.get("train_bundle") or first.get("bundle")
    n_train = args.n_train or int(first.get("training", {}).get("n_train", 0))
    if not (test_path and train_path and n_train):
        raise SystemExit("give --compare RUN... or all of --test-bundle, --train-bundle and --n-train")
    test = Bundle.load(test_path)
    n_test = min(args.n_test or test.size("test"), test.size("test"))
    whitener = run_whitener(first, train_path, n_train, test, test_path, args.workers)
    raw_test, snr = rebuild_split(test, "test", n_test, args.workers)
    target = test.arrays["test_target"][:n_test].astype(np.float32)

    cfg = bank_config(args.bank, args.bank_override)
    mf = matched_filter(test, whitener, "cpu")
    n = raw_test.shape[-1]
    n_lags = mf._lags(n)[0]
    t0 = time.perf_counter()
    bank, spectra = place_bank(cfg, test.sim["priors"], lambda p: mf.template_spectra(p, n), n_lags, progress=True)
    placed_s = time.perf_counter() - t0
    print(f"bank '{args.bank}': {len(bank)} templates placed in {placed_s:.0f} s")

    coverage = coverage_report(test, mf, spectra, f"{args.bank} ({len(bank)})", args.coverage,
                               float(cfg.get("minimal_match", 0.97)))
    log_weights = prior_weights(test, mf, spectra, args.prior_draws, args.seed) if args.prior_draws else None

    t0 = time.perf_counter()
    snr2 = mf.network_snr2(raw_test, spectra, progress=True)
    search_s = time.perf_counter() - t0
    key = f"mf_bank{len(bank)}"
    scores = {**matched_filter_scores(test, whitener, raw_test, "cpu", bank=False),
              key: np.sqrt(snr2.max(-1)), f"{key}_marginal": marginalised(snr2)}
    if log_weights is not None:
        scores[f"{key}_prior"] = marginalised(snr2, log_weights)
    combined = None
    if runs:
        scores["cnn_ensemble"] = ensemble_cnn(runs, n_test, target, test_path)
        if log_weights is not None:    # how much the CNN and the best search know that the other does not
            combined, _ = add_combination(scores, target, "cnn_ensemble", f"{key}_prior")
        summary = report_scores(scores, target, snr, test.meta["model"], "cnn_ensemble", 0.02,
                                f"ensemble of {len(runs)} CNNs on {n_test} samples of {test_path}")
    else:
        rows = snr_binned_table(scores, target, snr, list(test.meta["model"]["snr_bins"]), float(test.meta["model"]["false_alarm"]))
        print(format_table(rows))
        summary = {"table": rows}
    pairs = [(key, "mf_true"), (f"{key}_marginal", "mf_true"), (f"{key}_prior", "mf_true"), (f"{key}_marginal", key),
             (f"{key}_prior", key),
             *[("cnn_ensemble", k) for k in scores if k.startswith("mf_bank")],
             *([(combined, "mf_true"), (combined, "cnn_ensemble")] if combined else [])]
    diffs = differences(scores, target, pairs)
    mass_rows = chirp_mass_table(scores, target, snr, chirp_masses_of_test_set(test, n_test), CHIRP_EDGES, (6.0, 10.0),
                                 float(test.meta["model"]["false_alarm"]))
    print("signals with injected SNR 6-10 by chirp mass (Msun), against all noise:")
    print(format_table(mass_rows, bin_name="Mchirp"))

    report = {"test_bundle": test_path, "train_bundle": train_path, "n_train": n_train, "n_test": n_test,
              "bank": cfg, "n_templates": len(bank), "placement_seconds": placed_s, "search_seconds": search_s,
              "search_samples_per_s": n_test / search_s, "torch_threads": torch.get_num_threads(),
              "compare": [str(r.path) for r in runs], "coverage": coverage, "differences": diffs,
              "chirp_mass_table": mass_rows, **summary}
    write_outputs(args.out, report, bank, {**scores, "target": target, "snr": snr})
    return report


if __name__ == "__main__":
    main()
