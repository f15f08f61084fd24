"""Template banks for the matched-filter search: where templates go, and how well they cover the prior.

Two placements (`conf/gw/bank/*.yaml`, `placement:`). `grid`: fixed steps in (log chirp mass, mass ratio, spin),
cheap, but its chirp-mass steps are far too coarse where signals are long in band (low chirp mass: a 4 % step
shifts the inspiral by cycles), so it loses SNR on the signals a matched filter should find best and under-states
what a search over the prior can reach. `stochastic`, the standard way to build BBH banks: candidates are swept
in chirp mass and one joins the bank only if no template already in it matches it to `minimal_match`.

The match of two templates is the search's own: whitened in-band spectra with each detector's fitted PSD, maximised
over time and phase, the worst (minimum) over detectors, so every detector's filter keeps >= minimal_match of
its optimal SNR. `fitting_factors` measures the coverage a bank reaches on given signals.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from rich.progress import track
from scipy.optimize import brentq

from detsim.errors import ConfigError
from detsim.gw.priors import draw_one


def unit_spectra(spectra: np.ndarray) -> torch.Tensor:
    """(K, n_det, F) complex spectra scaled to unit norm per detector (in float64: whitened strain spectra reach
    1e24, whose squares overflow complex64), as complex64."""
    spectra = np.asarray(spectra, dtype=np.complex128)
    norm = np.linalg.norm(spectra, axis=-1, keepdims=True)
    return torch.as_tensor(spectra / np.maximum(norm, 1e-300), dtype=torch.complex64)


def template_matches(a: torch.Tensor, b: torch.Tensor, n_lags: int) -> torch.Tensor:
    """(A, D, F) x (B, D, F) unit-norm spectra -> (A, B): max over time shifts (n_lags of them, cyclic) and phase
    of the overlap, minimum over detectors."""
    prod = a[:, None] * b[None].conj()                              # (A, B, D, F)
    overlap = torch.fft.ifft(prod, n=n_lags, dim=-1).abs() * n_lags
    return overlap.amax(-1).amin(-1)


def best_templates(signals: torch.Tensor, bank: torch.Tensor, n_lags: int, batch: int = 32,
                   template_batch: int = 256, progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each signal's best match over the bank (its fitting factor: the fraction of its SNR the search keeps) and
    the index of the template that gives it; `progress` names a progress bar (minutes for thousands of signals)."""
    factors, index = np.empty(len(signals)), np.empty(len(signals), dtype=np.int64)
    for s in track(range(0, len(signals), batch), description=progress or "", disable=progress is None):
        match = torch.cat([template_matches(signals[s : s + batch], bank[k : k + template_batch], n_lags)
                           for k in range(0, len(bank), template_batch)], 1)
        best = match.max(1)
        factors[s : s + len(match)], index[s : s + len(match)] = best.values.numpy(), best.indices.numpy()
    return factors, index


def fitting_factors(signals: torch.Tensor, bank: torch.Tensor, n_lags: int, progress: str | None = None) -> np.ndarray:
    """Best match over the bank of each signal's template."""
    return best_templates(signals, bank, n_lags, progress=progress)[0]


def prior_log_weights(best_index: np.ndarray, n_templates: int) -> np.ndarray:
    """ln of each template's prior mass, estimated as its share of prior draws it matches best (plus one pseudo-draw,
    so no template is weightless). A stochastic bank is densest where templates change fastest, not where the prior
    is; these weights turn the mean over the bank into the mean over the prior."""
    counts = np.bincount(best_index, minlength=n_templates) + 1.0
    return np.log(counts / counts.sum())


def masses_from_chirp(chirp: np.ndarray | float, ratio: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(mass1, mass2) of chirp mass `chirp` and mass ratio `ratio` = mass1 / mass2 >= 1."""
    total = chirp * (1 + ratio) ** 1.2 / ratio**0.6
    mass2 = total / (1 + ratio)
    return total - mass2, mass2


def chirp_mass(mass1: np.ndarray | float, mass2: np.ndarray | float) -> np.ndarray | float:
    """(m1 m2)^(3/5) / (m1 + m2)^(1/5): the mass combination that sets the inspiral's frequency sweep (and its
    duration in band), so template density and detection efficiency are read against it."""
    return (mass1 * mass2) ** 0.6 / (mass1 + mass2) ** 0.2


def mass_box(priors: Mapping[str, Any]) -> tuple[float, float]:
    """The component-mass range the prior covers."""
    return float(priors["mass2"]["low"]), float(priors["mass1"]["high"])


def bank_parameters(bank: Mapping[str, Any], priors: Mapping[str, Any]) -> list[dict[str, float]]:
    """The grid bank: a grid in (log chirp mass, mass ratio, effective aligned spin) covering the prior's mass box."""
    lo, hi = mass_box(priors)
    chirp = np.exp(np.linspace(np.log(chirp_mass(lo, lo)), np.log(chirp_mass(hi, hi)), int(bank["n_chirp_mass"])))
    ratios = np.linspace(1.0, hi / lo, int(bank["n_mass_ratio"]))
    spins = np.linspace(-float(bank["spin_max"]), float(bank["spin_max"]), int(bank["n_spin"]))
    out = []
    for m_c, q, chi in itertools.product(chirp, ratios, spins):
        m1, m2 = masses_from_chirp(m_c, q)
        if lo - 1e-9 <= m2 and m1 <= hi + 1e-9:
            out.append(dict(mass1=m1, mass2=m2, spin1z=chi, spin2z=chi))
    return out


def max_mass_ratio(chirp: float, lo: float, hi: float) -> float:
    """Largest mass ratio m1/m2 with chirp mass `chirp` and both masses in [lo, hi] (m2 falls and m1 rises with
    the ratio at fixed chirp mass)."""
    def inside(q: float) -> float:
        m1, m2 = masses_from_chirp(chirp, q)
        return min(m2 - lo, hi - m1)

    if inside(1.0) <= 0:
        return 1.0
    if inside(hi / lo) >= 0:
        return hi / lo
    return float(brentq(inside, 1.0, hi / lo, xtol=1e-10))


def placement_candidates(priors: Mapping[str, Any], n: int, seed: int) -> list[dict[str, float]]:
    """n candidates log-uniform in chirp mass and uniform in the mass ratios the prior's mass box allows at that
    chirp mass, spins from the prior. Not the prior itself: uniform masses put few draws at low chirp mass, where
    templates are densest (and where the box leaves only near-equal masses)."""
    lo, hi = mass_box(priors)
    rng = np.random.default_rng(seed)
    out: list[dict[str, float]] = []
    log_chirp = np.log([chirp_mass(lo, lo), chirp_mass(hi, hi)])
    for _ in range(n):
        chirp = float(np.exp(rng.uniform(*log_chirp)))
        m1, m2 = masses_from_chirp(chirp, rng.uniform(1.0, max_mass_ratio(chirp, lo, hi)))
        out.append(dict(mass1=float(min(m1, hi)), mass2=float(max(m2, lo)), spin1z=draw_one("spin1z", priors["spin1z"], rng),
                        spin2z=draw_one("spin2z", priors["spin2z"], rng)))
    return out


def stochastic_bank(candidates: Sequence[Mapping[str, float]], spectra_of: Callable[[Sequence[Mapping[str, float]]], np.ndarray],
                    minimal_match: float, n_lags: int, chirp_window: float = 0.15, batch: int = 64,
                    progress: bool = False) -> tuple[list[dict[str, float]], torch.Tensor]:
    """Place templates from `candidates`, swept in chirp mass: a candidate joins the bank when its best match with
    the templates within `chirp_window` in ln(chirp mass) (and with the candidates kept before it in its batch) is
    below `minimal_match`. Templates further apart in chirp mass are not compared, which keeps placement linear in
    the bank size; should such a pair match, the cost is a redundant template, never a hole. Returns the
    parameters and the unit spectra of the bank; `spectra_of` maps parameters to (len, n_det, F) whitened, in-band
    template spectra."""
    if not 0.0 < minimal_match < 1.0:
        raise ValueError(f"minimal_match must lie in (0, 1), got {minimal_match}")
    if not candidates:
        raise ValueError("no candidates to place a bank from")
    ordered = sorted((dict(p) for p in candidates), key=lambda p: chirp_mass(p["mass1"], p["mass2"]))
    kept: list[dict[str, float]] = []
    spectra_kept: list[torch.Tensor] = []
    log_chirp_kept: list[float] = []
    starts = range(0, len(ordered), batch)
    for start in track(starts, description=f"template bank (minimal match {minimal_match})", disable=not progress):
        params = ordered[start : start + batch]
        log_chirp = np.log([chirp_mass(p["mass1"], p["mass2"]) for p in params])
        spectra = unit_spectra(spectra_of(params))
        near = [k for k, c in enumerate(log_chirp_kept) if c >= log_chirp[0] - chirp_window]   # kept are sorted
        best = (template_matches(spectra, torch.stack([spectra_kept[k] for k in near]), n_lags).amax(1) if near
                else torch.zeros(len(params)))
        within = template_matches(spectra, spectra, n_lags)        # candidate i vs earlier kept j < i
        chosen: list[int] = []
        for i in range(len(params)):
            if bool(best[i] < minimal_match) and all(within[i, j] < minimal_match for j in chosen):
                chosen.append(i)
        kept.extend(params[i] for i in chosen)
        spectra_kept.extend(spectra[i] for i in chosen)
        log_chirp_kept.extend(float(log_chirp[i]) for i in chosen)
    return kept, torch.stack(spectra_kept)


def place_bank(cfg: Mapping[str, Any], priors: Mapping[str, Any], spectra_of: Callable[[Sequence[Mapping[str, float]]], np.ndarray],
               n_lags: int, progress: bool = False) -> tuple[list[dict[str, float]], torch.Tensor]:
    """The bank a `conf/gw/bank` config describes (`placement: grid` or `stochastic`): parameters and unit spectra."""
    placement = cfg.get("placement", "grid")
    if placement == "grid":
        params = bank_parameters(cfg, priors)
        return params, unit_spectra(spectra_of(params))
    if placement == "stochastic":
        candidates = placement_candidates(priors, int(cfg["n_candidates"]), int(cfg["seed"]))
        return stochastic_bank(candidates, spectra_of, float(cfg["minimal_match"]), n_lags, float(cfg["chirp_window"]),
                               batch=int(cfg.get("batch", 64)), progress=progress)
    raise ConfigError(f"gw bank placement {placement!r} is unknown: use 'grid' or 'stochastic'")
