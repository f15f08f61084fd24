"""Figures of an evaluation: one histogram per feature with a generated/reference ratio panel, ROC curves
(of the two-sample tests, of a particle-ID classifier).

mplhep's style for the look HEP readers expect; the Agg backend so it runs on batch nodes. Every
function writes a PNG and returns its path, so the caller decides what to log where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from detsim.metrics.roc import PidScore, RocCurve  # noqa: E402
from detsim.metrics.separation import HistComparison, normalise  # noqa: E402
from detsim.files import atomic_output  # noqa: E402

STYLE = hep.style.ATLAS


def save_figure(fig: "plt.Figure", path: str | Path, close: bool = False, **kwargs: object) -> Path:
    """`fig.savefig` through a temporary file renamed into place, so a kill never leaves a truncated image;
    `close` closes the figure afterwards (pyplot keeps every open figure alive)."""
    path = Path(path)
    try:
        with atomic_output(path) as partial:
            fig.savefig(partial, format=path.suffix.lstrip(".") or "png", **kwargs)
    finally:
        if close:
            plt.close(fig)
    return path


def feature_histogram(
    comparison: HistComparison,
    path: str | Path,
    xlabel: str,
    labels: tuple[str, str] = ("reference", "generated"),
    dpi: int = 100,
) -> Path:
    """Normalised histograms of one feature (reference binning) with a ratio panel below."""
    path = Path(path)
    edges = comparison.binning.edges
    ref, gen = normalise(comparison.counts_ref), normalise(comparison.counts_gen)
    with plt.style.context(STYLE):
        fig, (ax, rax) = plt.subplots(
            2, 1, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
        )
        # fixed margins instead of bbox_inches="tight": one draw per figure instead of two
        fig.subplots_adjust(left=0.17, right=0.96, top=0.96, bottom=0.12)
        hep.histplot(ref, edges, ax=ax, histtype="fill", alpha=0.3, color="tab:blue", label=labels[0])
        hep.histplot(gen, edges, ax=ax, histtype="step", linewidth=2, color="tab:orange", label=labels[1])
        ax.set_ylabel("fraction of showers")
        if ref.max() > 0 and ref[ref > 0].min() < ref.max() / 100:
            ax.set_yscale("log")
        ax.legend(title=f"sep. power {comparison.separation_power:.4f}", fontsize="small")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ref > 0, gen / ref, np.nan)
        rax.stairs(ratio, edges, color="tab:orange", linewidth=2)
        rax.axhline(1.0, color="k", linewidth=1, linestyle="--")
        rax.set_ylim(0.5, 1.5)
        rax.set_ylabel(f"{labels[1][:3]}/{labels[0][:3]}")
        rax.set_xlabel(xlabel)
        if comparison.binning.log:
            rax.set_xscale("log")
        save_figure(fig, path, dpi=dpi)
        plt.close(fig)
    return path


def roc_curves(curves: Mapping[str, RocCurve], path: str | Path, title: str | None = None, dpi: int = 100) -> Path:
    """ROC curves (true- vs false-positive rate) of several classifiers with their AUC, and the diagonal."""
    path = Path(path)
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 6.5))
        for name, curve in curves.items():
            ax.plot(curve.fpr, curve.tpr, linewidth=2, label=f"{name} (AUC {curve.auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        if title:
            ax.set_title(title)
        ax.legend(loc="lower right", fontsize="small")
        save_figure(fig, path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
    return path


def save_roc_plot(score: PidScore, path: str | Path, labels: tuple[str, str] = ("signal", "pion")) -> Path:
    """The ROC curve of one particle-ID classifier as a PNG."""
    return roc_curves({f"{labels[0]} vs {labels[1]}": score.roc}, path, "particle identification")
