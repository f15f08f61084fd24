"""The matched filters the CNN is judged against, from a bundle: with each sample's own template (the bound the
accuracy target is set against) and with the bundled template bank (the search a real analysis runs)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from detsim.gw.matched_filter import MatchedFilter, wrap_at_merger
from detsim.gw.whiten import Whitener

from studies.gw.samples import Bundle


def template_waves(bundle: Bundle, split: str, waves: Iterable[int]) -> np.ndarray:
    """(len, n_samples) wrapped face-on h+ (`wrap_at_merger`) of the bundled binaries `waves` of a split
    ("train", "test" or "bank")."""
    fs, n_samples = float(bundle.sim["sample_rate"]), int(bundle.meta["n_samples"])
    return np.stack([wrap_at_merger(*bundle.plus0(split, int(w)), n_samples, fs) for w in waves])


def true_template_waves(bundle: Bundle, split: str, sl: slice) -> np.ndarray:
    """Templates of the own binary of samples `sl`, for `MatchedFilter.own_template_scores`."""
    return template_waves(bundle, split, bundle.arrays[f"{split}_wave"][sl])


def matched_filter(bundle: Bundle, whitener: Whitener, device: str) -> MatchedFilter:
    """The matched filter of the bundle's simulator config, in the units of the fitted `whitener`."""
    t_merger = bundle.sim["priors"]["t_merger"]
    return MatchedFilter(whitener, str(bundle.sim["approximant"]), float(bundle.sim["f_lower"]),
                         (float(t_merger["low"]), float(t_merger["high"])), float(bundle.meta["bank"]["coincidence"]),
                         device=device, batch=256 if device != "cpu" else 64)


def matched_filter_scores(bundle: Bundle, whitener: Whitener, raw_test: np.ndarray, device: str,
                          bank: bool = True) -> dict[str, np.ndarray]:
    """Matched-filter statistics of the test strain: with each sample's true template (`mf_true`, the bound) and,
    when the bundle holds a bank and `bank`, the max over the bank (`mf_bank<K>`, the search a real analysis runs)."""
    mf = matched_filter(bundle, whitener, device)
    scores = {"mf_true": mf.own_template_scores(raw_test, lambda sl: true_template_waves(bundle, "test", sl),
                                                progress=True)}
    if bank and "bank_wave_offset" in bundle.arrays:
        waves = template_waves(bundle, "bank", range(len(bundle.arrays["bank_wave_merger"])))
        scores[f"mf_bank{len(waves)}"] = mf.wave_bank_scores(raw_test, waves, progress=True)
    return scores
