"""Combining two detection statistics (detsim.metrics.combination, studies/gw/combine.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from detsim.metrics.combination import crossfit_combination
from detsim.metrics.roc import roc_auc



def _two_noisy_views(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, an SNR, and two statistics that see the same signal through independent noise."""
    rng = np.random.default_rng(seed)
    target = (rng.random(n) < 0.5).astype(np.float32)
    snr = np.where(target == 1, rng.uniform(0.5, 2.5, n), 0.0)
    return target, snr, snr + rng.normal(size=n), 3.0 * snr + 3.0 * rng.normal(size=n) + 10.0


def test_independent_views_combine_to_more_than_either() -> None:
    target, _, a, b = _two_noisy_views()
    combo = crossfit_combination(a, b, target)
    auc_a, auc_b, auc_c = roc_auc(target, a), roc_auc(target, b), roc_auc(target, combo.scores)
    # two views with independent noise of equal standardised strength: about half of each, and clearly better
    assert auc_c > max(auc_a, auc_b) + 0.02
    assert all(0.3 < w < 0.7 for w in combo.weights_of_b)


def test_an_uninformative_statistic_gets_little_weight_and_adds_nothing() -> None:
    target, _, a, _ = _two_noisy_views(seed=1)
    useless = np.random.default_rng(2).normal(size=len(target))
    combo = crossfit_combination(a, useless, target)
    assert max(combo.weights_of_b) < 0.25
    assert roc_auc(target, combo.scores) < roc_auc(target, a) + 0.005


def test_no_sample_is_scored_with_its_own_label() -> None:
    """Relabelling the samples of one fold leaves that fold's combined scores unchanged: its weight and scales
    come from the other folds only."""
    target, _, a, b = _two_noisy_views(seed=3)
    combo = crossfit_combination(a, b, target, folds=3, seed=5)
    held = combo.fold == 0
    relabelled = target.copy()
    relabelled[held] = 1 - relabelled[held]
    again = crossfit_combination(a, b, relabelled, folds=3, seed=5)
    np.testing.assert_array_equal(again.scores[held], combo.scores[held])
    assert not np.array_equal(again.scores[~held], combo.scores[~held])


def test_bad_input_is_refused() -> None:
    target, _, a, b = _two_noisy_views(n=100)
    with pytest.raises(ValueError, match="folds"):
        crossfit_combination(a, b, target, folds=1)
    with pytest.raises(ValueError, match="length"):
        crossfit_combination(a[:-1], b, target)
    with pytest.raises(ValueError, match="1 non-finite"):
        crossfit_combination(np.where(np.arange(len(a)) == 3, np.nan, a), b, target)
    with pytest.raises(ValueError, match="constant"):
        crossfit_combination(np.zeros_like(a), b, target)


def test_gw_combine_reports_the_combination_against_the_bound(tmp_path: Path) -> None:
    from studies.gw import combine as gw_combine

    target, snr, a, b = _two_noisy_views(seed=4)
    bound = 4.0 * snr + np.random.default_rng(6).normal(size=len(target))
    np.savez(tmp_path / "gw_test_scores.npz", target=target, snr=snr * 5.0, cnn_ensemble=a, mf_true=bound,
             mf_bank50=b - 1.0, mf_bank50_prior=b)
    report = gw_combine.main([str(tmp_path / "gw_test_scores.npz"), "--out", str(tmp_path / "out")])
    assert report["b"] == "mf_bank50_prior"          # the strongest search in the file is the default partner
    saved = json.loads((tmp_path / "out" / "gw_combine.json").read_text())
    diffs = {(d["a"], d["b"]): d for d in saved["differences"]}
    gain = diffs[("cnn_ensemble+mf_bank50_prior", "cnn_ensemble")]
    assert gain["diff"] > 3 * gain["se"] > 0
    assert saved["auc"]["cnn_ensemble+mf_bank50_prior"] == pytest.approx(report["auc"]["cnn_ensemble+mf_bank50_prior"])
