"""Comparing GW detectors (CNN scores, matched-filter statistics) on one test set: ROC AUC overall and
in bins of injected network SNR, as a table and two plots (ROC curves; efficiency vs SNR at a fixed
false-alarm probability). Each SNR bin's AUC is signals of that bin against *all* noise samples.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from detsim.metrics.roc import RocCurve, roc_auc  # noqa: E402


def snr_binned_table(scores: Mapping[str, np.ndarray], target: np.ndarray, snr: np.ndarray,
                     edges: Sequence[float], false_alarm: float = 0.01) -> list[dict[str, float | str]]:
    """One row per (detector, SNR bin) plus an 'all' row: AUC and efficiency at `false_alarm`."""
    target = np.asarray(target).astype(bool)
    rows: list[dict[str, float | str]] = []
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        threshold = np.quantile(s[~target], 1.0 - false_alarm)
        bins = [("all", target)] + [
            (f"{lo:g}-{hi:g}", target & (snr >= lo) & (snr < hi)) for lo, hi in zip(edges[:-1], edges[1:])]
        for label, sel in bins:
            if sel.sum() == 0:
                continue
            keep = sel | ~target
            rows.append({"detector": name, "snr_bin": label, "n_signal": int(sel.sum()),
                         "auc": roc_auc(target[keep], s[keep]), "efficiency": float(np.mean(s[sel] > threshold))})
    return rows


def format_table(rows: Sequence[Mapping[str, float | str]], bin_name: str = "SNR bin") -> str:
    lines = [f"{'detector':<16}{bin_name:>10}{'n_sig':>8}{'AUC':>9}{'eff@FAP':>9}"]
    lines += [f"{r['detector']:<16}{r['snr_bin']:>10}{r['n_signal']:>8}{r['auc']:>9.4f}{r['efficiency']:>9.3f}"
              for r in rows]
    return "\n".join(lines)


def roc_figure(scores: Mapping[str, np.ndarray], target: np.ndarray):
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, s in scores.items():
        curve = RocCurve.from_scores(target, s).downsample()
        ax.plot(curve.fpr, curve.tpr, label=f"{name} (AUC {roc_auc(target, s):.4f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="GW detection ROC")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def efficiency_figure(rows: Sequence[Mapping[str, float | str]], false_alarm: float = 0.01):
    fig, (ax_eff, ax_auc) = plt.subplots(1, 2, figsize=(9, 4))
    for name in dict.fromkeys(r["detector"] for r in rows):
        sel = [r for r in rows if r["detector"] == name and r["snr_bin"] != "all"]
        centres = [np.mean([float(v) for v in str(r["snr_bin"]).split("-")]) for r in sel]
        ax_eff.plot(centres, [r["efficiency"] for r in sel], marker="o", label=name)
        ax_auc.plot(centres, [r["auc"] for r in sel], marker="o", label=name)
    ax_eff.set(xlabel="injected network SNR", ylabel=f"efficiency at FAP {false_alarm:g}")
    ax_auc.set(xlabel="injected network SNR", ylabel="AUC (bin signals vs all noise)")
    ax_eff.legend(fontsize=8)
    fig.tight_layout()
    return fig
