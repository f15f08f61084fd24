"""Score an ensemble of 1D CNNs trained by separate `studies.gw.cnn_vs_matched_filter` runs on the same bundle: the mean of
their logits (each run's configured view) against the matched filters those runs measured on the same test set.

Independently trained networks make partly independent errors on a noisy test set, so averaging them is the
cheapest way to more AUC once one network has stopped improving; every G2Net top entry was such an ensemble.
Runs already trained are combined without re-training (one run alone gives its own tables, among them
the chirp-mass breakdown that a single run does not print):
    python -m studies.gw.ensemble outputs/run_seed1 outputs/run_seed2 --out outputs/ensemble
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detsim.gw.report import format_table, snr_binned_table
from detsim.gw.template_bank import chirp_mass

from studies.gw.auc_gap import VIEWS, report_scores
from studies.gw.cnn_vs_matched_filter import REPORT, SCORES
from studies.gw.samples import Bundle


@dataclass
class RunScores:
    """One finished run: its report and its test-set scores."""

    path: Path
    report: dict[str, Any]
    scores: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str | Path) -> "RunScores":
        path = Path(path)
        missing = [name for name in (REPORT, SCORES) if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not a cnn_vs_matched_filter run folder: missing {', '.join(missing)}")
        with np.load(path / SCORES) as data:
            scores = {k: data[k] for k in data.files}
        return cls(path, json.loads((path / REPORT).read_text()), scores)

    def cnn_score(self, view: str) -> np.ndarray:
        """The CNN's test logits in `view`: 'symmetric' (mean over the four symmetric views) or 'one'."""
        key = VIEWS[view]
        if key not in self.scores:
            raise KeyError(f"{self.path / SCORES} holds no '{key}' score (view '{view}'); it has {sorted(self.scores)}")
        return self.scores[key].astype(np.float64)


def ensemble_scores(runs: list[RunScores], view: str = "symmetric") -> dict[str, np.ndarray]:
    """Each member's CNN score in `view`, their mean (`cnn_ensemble`) and the matched filters of the first run that has
    them; refuses runs whose test sets differ, since their scores would not be of the same samples."""
    if not runs:
        raise ValueError("an ensemble needs at least one run")
    first = runs[0]
    for other in runs[1:]:
        for key in ("target", "snr"):
            if not np.array_equal(first.scores[key], other.scores[key]):
                raise ValueError(f"{other.path} scored another test set than {first.path} ('{key}' differs): "
                                 "members must come from the same bundle, --n-test and --n-train")
    members = {f"cnn_member{i + 1}": run.cnn_score(view) for i, run in enumerate(runs)}
    scores = {**members, "cnn_ensemble": np.mean(list(members.values()), axis=0)}
    for run in runs:   # matched filters do not depend on the network: take each from the first run that has it
        for key in (k for k in run.scores if k.startswith("mf_") and k not in scores):
            scores[key] = run.scores[key]
    if "mf_true" not in scores:
        raise ValueError("no run holds the true-template matched filter score 'mf_true'")
    return scores


def chirp_masses_of_test_set(bundle: Bundle, n: int) -> np.ndarray:
    """Chirp mass of the binary behind each of the first n test samples (noise-only: drawn, not injected)."""
    mass1, mass2 = bundle.arrays["test_wave_intrinsic"][bundle.arrays["test_wave"][:n]][:, :2].T
    return chirp_mass(mass1.astype(np.float64), mass2.astype(np.float64))


def chirp_mass_table(scores: dict[str, np.ndarray], target: np.ndarray, snr: np.ndarray, mchirp: np.ndarray,
                     edges: list[float], snr_range: tuple[float, float], false_alarm: float) -> list[dict[str, Any]]:
    """AUC and efficiency of signals with injected SNR in `snr_range`, per chirp-mass bin, against all noise:
    where in the mass range a detector loses to the matched filter (long low-mass chirps need coherent
    integration over many cycles; short heavy ones do not)."""
    target = target.astype(bool)
    keep = ~target | ((snr >= snr_range[0]) & (snr < snr_range[1]))
    return snr_binned_table({k: v[keep] for k, v in scores.items()}, target[keep], mchirp[keep], edges, false_alarm)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders of studies.gw.cnn_vs_matched_filter (same bundle and test set)")
    ap.add_argument("--bundle", default=None, help="the runs' bundle, for the SNR bins and model config "
                                                   "(default: the one the first run names)")
    ap.add_argument("--view", choices=sorted(VIEWS), default="symmetric",
                    help="each member's score: mean over the four symmetric views (conf/model/gw_1dcnn "
                         "test_time_augmentation, the default) or one view")
    ap.add_argument("--target", type=float, default=0.02, help="allowed AUC shortfall of the CNN vs the MF")
    ap.add_argument("--mchirp-bins", type=float, nargs="+", default=[5, 15, 20, 25, 30, 50],
                    help="chirp-mass bin edges (solar masses) of the second table")
    ap.add_argument("--mchirp-snr", type=float, nargs=2, default=[6, 10], metavar=("LOW", "HIGH"),
                    help="injected-SNR range of the signals in the chirp-mass table (where detectors differ)")
    ap.add_argument("--out", default=None, help="folder for gw_ensemble.json (default: print only)")
    args = ap.parse_args(argv)
    runs = [RunScores.load(path) for path in args.runs]
    bundle = Bundle.load(args.bundle or runs[0].report["bundle"])
    scores = ensemble_scores(runs, args.view)
    target, snr = runs[0].scores["target"], runs[0].scores["snr"]
    label = f"ensemble of {len(runs)} CNNs ({args.view} view), test set {len(target)} samples"
    report = {"runs": [str(run.path) for run in runs], "view": args.view,
              **report_scores(scores, target, snr, bundle.meta["model"], "cnn_ensemble", args.target, label)}
    rows = chirp_mass_table(scores, target, snr, chirp_masses_of_test_set(bundle, len(target)), args.mchirp_bins,
                            tuple(args.mchirp_snr), float(bundle.meta["model"]["false_alarm"]))
    print(f"signals with injected SNR {args.mchirp_snr[0]:g}-{args.mchirp_snr[1]:g} by chirp mass (Msun), against all noise:")
    print(format_table(rows, bin_name="Mchirp"))
    report["chirp_mass_table"] = rows
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gw_ensemble.json").write_text(json.dumps(report, indent=1, default=float))
    return report


if __name__ == "__main__":
    main()
