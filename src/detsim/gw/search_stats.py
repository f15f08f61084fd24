"""False-alarm rate and sensitive distance of a search, defined as MLGWSC-1 (arXiv 2209.11146) and pycbc define them.

FAR: the background (time-slid triggers, or triggers of noise-only data) over its livetime T gives
FAR(x) = #{background triggers with stat >= x} / T. At a FAR f the detection threshold is the (m+1)-th loudest
background trigger, m = floor(f T): a foreground trigger louder than it has FAR <= f. A FAR below 1/T is not
resolved by the background and is reported as such, never extrapolated.

Found injections: each foreground (zero-lag) trigger is assigned to the injection closest in time; it finds it when
|time - tc| <= its `var` (or `found_window`); an injection's statistic is the loudest of the triggers that find it
(-inf when none). Only injections inside the analysed spans count.

Sensitive volume (Monte Carlo over the injections): when the injections' chirp distance is uniform in volume on
[Dc_min, Dc_max], injection i was drawn uniformly in the shell between d_i = Dc (Mc_i / Mc_ref)^(5/6) for Dc = Dc_min
and Dc_max, of volume V_i; V = mean_i(inner ball_i) + (1/N) sum_found V_i (the inner balls, nearer than any
injection, counted as found), with Monte Carlo error sqrt(sum_found V_i^2 - (sum_found V_i)^2 / N) / N. This is
MLGWSC-1's estimator (sum over found injections of Mc^(5/2), times the full ball) with the inner ball counted
exactly: theirs assigns the shell's efficiency to the inner ball too (5 % of the volume for 130-350 Mpc). Injection
files without the chirp-distance range (attributes) fall back to MLGWSC-1's formula with the sample maxima.
Sensitive distance R = (3 V / 4 pi)^(1/3).
"""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from detsim.gw.template_bank import chirp_mass  # noqa: E402

DAY = 86400.0
WEEK = 7 * DAY
MONTH = 30 * DAY     # MLGWSC-1's month: its test set was 30 days (2,592,000 s)
REFERENCE_CHIRP_MASS = float(chirp_mass(1.4, 1.4))


def far_of(stats: np.ndarray, background: np.ndarray, livetime: float) -> np.ndarray:
    """FAR (Hz) of each statistic: background triggers at least as loud, per second of background."""
    ordered = np.sort(np.asarray(background, dtype=np.float64))
    louder = len(ordered) - np.searchsorted(ordered, np.asarray(stats, dtype=np.float64), side="left")
    return louder / float(livetime)


def threshold_at(far: float, background: np.ndarray, livetime: float) -> float | None:
    """The statistic an injection must exceed to be found at FAR `far` (Hz); None when far < 1 / livetime (the
    background is too short to resolve it); -inf when fewer background triggers than far x livetime exist."""
    m = int(np.floor(far * livetime + 1e-9))
    if m < 1:
        return None
    ordered = np.sort(np.asarray(background, dtype=np.float64))[::-1]
    return float(ordered[m]) if m < len(ordered) else -np.inf


def injection_stats(time: np.ndarray, stat: np.ndarray, var: np.ndarray, tc: np.ndarray,
                    window: float | None = None) -> np.ndarray:
    """Per injection (sorted `tc`), the loudest zero-lag trigger that finds it; -inf when none does."""
    out = np.full(len(tc), -np.inf)
    if len(tc) == 0 or len(time) == 0:
        return out
    right = np.clip(np.searchsorted(tc, time), 1, len(tc) - 1) if len(tc) > 1 else np.zeros(len(time), dtype=int)
    left = np.maximum(right - 1, 0)
    closest = np.where(np.abs(tc[left] - time) <= np.abs(tc[right] - time), left, right)
    allowed = np.full(len(time), window) if window is not None else np.asarray(var, dtype=np.float64)
    hit = np.abs(tc[closest] - time) <= allowed
    np.maximum.at(out, closest[hit], np.asarray(stat, dtype=np.float64)[hit])
    return out


def contained(tc: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Injections whose tc lies inside one of the analysed spans."""
    inside = np.zeros(len(tc), dtype=bool)
    for a, b in zip(starts, ends):
        inside |= (tc >= a) & (tc <= b)
    return inside


def injection_volumes(table: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(inner ball, shell) volume (Mpc^3) each injection was drawn uniformly in, as module doc says."""
    mchirp = chirp_mass(np.asarray(table["mass1"]), np.asarray(table["mass2"]))
    if "min_chirp_distance" in attrs and "max_chirp_distance" in attrs:
        scale = (mchirp / float(attrs.get("reference_chirp_mass", REFERENCE_CHIRP_MASS))) ** (5.0 / 6.0)
        inner = 4.0 / 3.0 * np.pi * (float(attrs["min_chirp_distance"]) * scale) ** 3
        outer = 4.0 / 3.0 * np.pi * (float(attrs["max_chirp_distance"]) * scale) ** 3
        return inner, outer - inner
    # MLGWSC-1's formula without the range: the ball of the largest distance, weighted by Mc^(5/2) when chirp
    # distances were drawn (else the same ball for every injection)
    ball = 4.0 / 3.0 * np.pi * float(np.max(table["distance"])) ** 3
    weight = (mchirp / mchirp.max()) ** 2.5 if "chirp_distance" in table else np.ones(len(mchirp))
    return np.zeros(len(mchirp)), ball * weight


def sensitive_volume(found: np.ndarray, inner: np.ndarray, shell: np.ndarray) -> tuple[float, float]:
    """Sensitive volume and its Monte Carlo error from which injections were found."""
    n = len(found)
    if n == 0:
        return float("nan"), float("nan")
    weights = np.where(found, shell, 0.0)
    volume = float(inner.mean() + weights.sum() / n)
    error = float(np.sqrt(max(np.sum(weights**2) - weights.sum() ** 2 / n, 0.0)) / n)
    return volume, error


def radius(volume: float | np.ndarray) -> float | np.ndarray:
    return (3.0 * np.asarray(volume) / (4.0 * np.pi)) ** (1.0 / 3.0)


def distance_at(far: float, inj_stat: np.ndarray, background: np.ndarray, livetime: float, inner: np.ndarray,
                shell: np.ndarray) -> dict[str, float] | None:
    """Sensitive distance (Mpc) and its error at FAR `far` (Hz); None when the background does not resolve it."""
    threshold = threshold_at(far, background, livetime)
    if threshold is None:
        return None
    found = inj_stat > threshold
    volume, error = sensitive_volume(found, inner, shell)
    distance = float(radius(volume))
    return {"far": far, "threshold": threshold, "n_found": int(found.sum()), "n_injections": len(found),
            "sensitive_volume": volume, "volume_error": error, "sensitive_distance": distance,
            "distance_error": distance * error / (3 * volume) if volume > 0 else float("nan")}


def sensitivity_curve(inj_stat: np.ndarray, background: np.ndarray, livetime: float, inner: np.ndarray,
                      shell: np.ndarray, max_points: int = 400) -> dict[str, np.ndarray]:
    """Sensitive distance at the FARs m / livetime the background resolves (m = 1 ... n_background, at most
    `max_points` of them, spaced logarithmically), loudest threshold first."""
    n_bg = len(background)
    if n_bg == 0:
        ms = np.array([1])
    else:
        ms = np.unique(np.round(np.logspace(0, np.log10(n_bg), max_points)).astype(int))
    rows = [distance_at(m / livetime, inj_stat, background, livetime, inner, shell) for m in ms]
    keys = ("far", "threshold", "n_found", "sensitive_volume", "volume_error", "sensitive_distance", "distance_error")
    curve = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    curve["far_per_day"], curve["far_per_month"] = curve["far"] * DAY, curve["far"] * MONTH
    return curve


def bootstrap_ratio(far: float, stat_a: np.ndarray, bg_a: np.ndarray, livetime_a: float, stat_b: np.ndarray,
                    bg_b: np.ndarray, livetime_b: float, inner: np.ndarray, shell: np.ndarray, n_boot: int = 1000,
                    seed: int = 0) -> tuple[float, float] | None:
    """Sensitive-distance ratio R_a / R_b of two searches on the same injections at one FAR, and its standard
    error from resampling the injections (both searches see the same resample, so their correlation is kept; the
    background's own fluctuation is not included). None when a background does not resolve `far`."""
    ta, tb = threshold_at(far, bg_a, livetime_a), threshold_at(far, bg_b, livetime_b)
    if ta is None or tb is None:
        return None
    fa, fb = stat_a > ta, stat_b > tb

    def ratio(idx: np.ndarray) -> float:
        va, _ = sensitive_volume(fa[idx], inner[idx], shell[idx])
        vb, _ = sensitive_volume(fb[idx], inner[idx], shell[idx])
        return float(radius(va) / radius(vb))

    rng = np.random.default_rng(seed)
    n = len(stat_a)
    draws = [ratio(rng.integers(0, n, n)) for _ in range(n_boot)]
    return ratio(np.arange(n)), float(np.std(draws, ddof=1))


def efficiency_table(inj_stat: np.ndarray, threshold: float, values: np.ndarray, edges: np.ndarray) -> list[dict[str, float]]:
    """Found fraction (with its binomial error) per bin of `values` (e.g. chirp mass, optimal SNR)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        k = int((inj_stat[sel] > threshold).sum())
        p = k / n if n else float("nan")
        rows.append({"low": float(lo), "high": float(hi), "n": n, "found": k, "efficiency": p,
                     "error": float(np.sqrt(p * (1 - p) / n)) if n else float("nan")})
    return rows


def curve_figure(curves: Mapping[str, Mapping[str, np.ndarray]], marks: Mapping[str, float] | None = None):
    """Sensitive distance vs FAR per month (MLGWSC-1's figure), one line per search, with its 1-sigma band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        line, = ax.plot(c["far_per_month"], c["sensitive_distance"], label=name)
        ax.fill_between(c["far_per_month"], c["sensitive_distance"] - c["distance_error"],
                        c["sensitive_distance"] + c["distance_error"], color=line.get_color(), alpha=0.25, lw=0)
    for label, far in (marks or {}).items():
        ax.axvline(far * MONTH, color="grey", ls=":", lw=1)
        ax.text(far * MONTH, ax.get_ylim()[0], f" {label}", rotation=90, va="bottom", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("false-alarm rate (per month)")
    ax.set_ylabel("sensitive distance (Mpc)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
