"""How far is the best of two detectors from the best detector the data allow? Combine their statistics and see.

A CNN and a matched-filter search are each short of the optimal (likelihood-ratio) detector in their own way. If a
weighted sum of their standardised statistics, with the weight fitted on other samples (`detsim.metrics.combination`,
two-fold cross-fitting), scores a higher AUC than either, then a detector at least that good exists, and the
better of the two has at least that much left to gain:

    python -m studies.gw.combine outputs/gw_bank_search/gw_test_scores.npz --bundle .gwbundle/test40k.npz

Reads a gw_test_scores.npz (the output of `bank_search`, `cnn_vs_matched_filter` or `rescore`), prints the combined
statistic's AUC next to its parts and to the true-template bound with DeLong errors, per SNR bin and, given the
test bundle, per chirp-mass bin. Writes OUT/gw_combine.json with --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from omegaconf import OmegaConf

from detsim.gw.report import format_table
from detsim.metrics.combination import crossfit_combination
from detsim.metrics.roc import auc_difference
from detsim.paths import config_dir

from studies.gw.auc_gap import report_scores
from studies.gw.ensemble import chirp_mass_table, chirp_masses_of_test_set
from studies.gw.samples import Bundle

CHIRP_EDGES = [5.0, 15.0, 20.0, 25.0, 30.0, 50.0]   # chirp-mass bins (Msun) of the tables here and in `bank_search`


def default_search(scores: dict[str, np.ndarray]) -> str:
    """The strongest search statistic present: the prior-weighted marginal, else the uniform one, else the max."""
    for suffix in ("_prior", "_marginal", ""):
        names = sorted(k for k in scores if k.startswith("mf_bank") and k.endswith(suffix) and
                       (suffix or "_" not in k[7:]))
        if names:
            return names[-1]
    raise KeyError(f"no template-bank statistic (mf_bank...) among {sorted(scores)}")


def differences(scores: dict[str, np.ndarray], target: np.ndarray, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """AUC(a) - AUC(b) with DeLong's standard error for each pair present."""
    rows = []
    for a, b in pairs:
        if a in scores and b in scores:
            diff, se = auc_difference(target, scores[a], scores[b])
            rows.append({"a": a, "b": b, "diff": diff, "se": se})
            print(f"AUC({a}) - AUC({b}) = {diff:+.4f} +- {se:.4f}")
    return rows


def add_combination(scores: dict[str, np.ndarray], target: np.ndarray, a: str, b: str, folds: int = 2,
                    seed: int = 0) -> tuple[str, list[float]]:
    """Add the cross-fitted combination of statistics `a` and `b` to `scores` as '<a>+<b>'; returns the key and the
    share of `b` fitted in each fold."""
    for name in (a, b):
        if name not in scores:
            raise KeyError(f"no statistic '{name}' among {sorted(scores)}")
    combination = crossfit_combination(scores[a], scores[b], target, folds=folds, seed=seed)
    key = f"{a}+{b}"
    scores[key] = combination.scores
    print(f"{key}: weight of {b} fitted per fold {', '.join(f'{w:.2f}' for w in combination.weights_of_b)} "
          f"({folds}-fold cross-fitting: no sample is scored by a weight fitted on it)")
    return key, combination.weights_of_b


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", type=Path, help="a gw_test_scores.npz with target, snr and the statistics")
    ap.add_argument("--bundle", default=None, help="its test bundle: the SNR bins, and the chirp-mass table")
    ap.add_argument("--a", default="cnn_ensemble", help="first statistic (default: the CNN ensemble)")
    ap.add_argument("--b", default=None, help="second statistic (default: the strongest bank search in the file)")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    ap.add_argument("--target", type=float, default=0.02, help="allowed AUC shortfall against the true-template MF")
    ap.add_argument("--out", type=Path, default=None, help="folder for gw_combine.json (default: print only)")
    args = ap.parse_args(argv)
    with np.load(args.scores) as data:
        arrays = {k: data[k] for k in data.files}
    target, snr = arrays.pop("target"), arrays.pop("snr")
    scores = {k: v.astype(np.float64) for k, v in arrays.items()}
    b = args.b or default_search(scores)
    key, weights = add_combination(scores, target, args.a, b, args.folds, args.seed)
    bundle = Bundle.load(args.bundle) if args.bundle else None
    model_cfg = bundle.meta["model"] if bundle else OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / "gw_1dcnn.yaml"))
    summary = report_scores(scores, target, snr, model_cfg, key, args.target, f"{key} on {len(target)} samples",
                            detector="combined detector (not a CNN)")
    diffs = differences(scores, target, [(key, "mf_true"), (args.a, "mf_true"), (b, "mf_true"), (key, args.a), (key, b)])
    report = {"scores": str(args.scores), "a": args.a, "b": b, "folds": args.folds, "weights_of_b": weights,
              "differences": diffs, **summary}
    if bundle is not None:
        rows = chirp_mass_table(scores, target, snr, chirp_masses_of_test_set(bundle, len(target)), CHIRP_EDGES,
                                (6.0, 10.0), float(model_cfg["false_alarm"]))
        print("signals with injected SNR 6-10 by chirp mass (Msun), against all noise:")
        print(format_table(rows, bin_name="Mchirp"))
        report["chirp_mass_table"] = rows
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gw_combine.json").write_text(json.dumps(report, indent=1, default=float))
    return report


if __name__ == "__main__":
    main()
