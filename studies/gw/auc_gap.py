"""The verdict of the accuracy target: a detector's test AUC against the true-template matched filter's, with
DeLong's standard error of the difference, overall and per injected-SNR bin. One report for a single network,
an ensemble of networks and a combined statistic alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from detsim.gw.report import format_table, snr_binned_table
from detsim.metrics.roc import auc_difference, roc_auc

VIEWS = {"symmetric": "cnn_symmetric", "one": "cnn"}   # a CNN view -> its score's key in gw_test_scores.npz


def configured_view(model_cfg: dict[str, Any]) -> str:
    """The CNN score the model config names, chosen before looking: `model.test_time_augmentation` picks the
    mean over the symmetric views."""
    return VIEWS["symmetric" if model_cfg.get("test_time_augmentation") else "one"]


def report_scores(scores: dict[str, np.ndarray], target: np.ndarray, snr: np.ndarray, model_cfg: dict[str, Any],
                  cnn_key: str, allowed: float, label: str, detector: str = "CNN") -> dict[str, Any]:
    """Print the SNR-binned AUC table of every detector and the verdict of `cnn_key` against the true-template
    matched filter (issue 5: within `allowed`); one report for a single run and for an ensemble of runs.
    `detector` names what `cnn_key` is in the verdict line, so a combined statistic is not called a CNN."""
    rows = snr_binned_table(scores, target, snr, list(model_cfg["snr_bins"]), float(model_cfg["false_alarm"]))
    print(format_table(rows))
    auc = {k: roc_auc(target, v) for k, v in scores.items()}
    searches = {"": "max over", "_marginal": "marginalised over", "_prior": "prior-weighted marginal over"}
    for name in (k for k in auc if k.startswith("mf_bank")):
        size, _, kind = name[7:].partition("_")
        print(f"template-bank matched filter ({searches[f'_{kind}' if kind else '']} {size} templates, the search a real "
              f"analysis runs): AUC {auc[name]:.4f}")
    gap, gap_se = auc_difference(target, scores[cnn_key], scores["mf_true"])
    verdict = "PASS" if gap >= -allowed else "MISS"
    print(f"{label}: {detector} AUC {auc[cnn_key]:.4f}, true-template MF AUC {auc['mf_true']:.4f}, "
          f"{detector} - MF = {gap:+.4f} +- {gap_se:.4f} (DeLong s.e. on this test set) -> {verdict} (target >= -{allowed})")
    return {"auc": auc, "gap": gap, "gap_se": gap_se, "verdict": verdict, "target": allowed, "table": rows}
