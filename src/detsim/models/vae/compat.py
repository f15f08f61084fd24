"""Checkpoints and calls from before the package split, translated in this one place.

Before the split (commit d58063f) the head, prior and voxel map were chosen by strings: `decoder.output`
(sigmoid | hurdle) with `decoder.energy` (lognormal | weibull), `prior.kind` (standard | fitted |
aggregate) and `marginals.kind` (none | quantile | affine), with defaults in code. Now each is a config
with a `_target_`. `upgrade_hparams` turns old hyper-parameters into new ones (the old code's defaults
live only here), `upgrade_state_dict` renames and trims old buffers, and `LatentPrior` keeps the old
`LatentPrior(latent_dim, kind=...)` constructor working.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from detsim.errors import ConfigError
from detsim.models.vae.prior import AggregatePrior, FittedPrior, LatentPrior as _Base, StandardPrior

_PKG = "detsim.models.vae"
_HEADS = {("sigmoid", None): "heads.SigmoidHead", ("hurdle", "lognormal"): "heads.LogNormalHurdleHead",
          ("hurdle", "weibull"): "heads.WeibullHurdleHead"}
_PRIORS = {"standard": StandardPrior, "fitted": FittedPrior, "aggregate": AggregatePrior}
_MAPS = {"none": "voxel_map.IdentityVoxelMap", "quantile": "voxel_map.QuantileVoxelMap",
         "affine": "voxel_map.AffineVoxelMap"}
# keys each old config kind kept (the old code accepted every key for every kind)
_PRIOR_KEYS = {"standard": (), "fitted": ("n_bins", "min_count"), "aggregate": ("n_bins", "bank_size")}
_MAP_KEYS = {"none": (), "affine": ("n_bins", "min_hits", "samples_per_shower", "reference_showers"),
             "quantile": ("n_bins", "n_knots", "grid", "margin", "min_hits", "samples_per_shower", "reference_showers")}
# the pre-split code's defaults for keys an old config could omit
_OLD_DEFAULTS: dict[str, dict[str, Any]] = {
    "encoder": {"hidden": [200, 150, 100, 50], "activation": "ELU", "input_norm": False, "norm_eps": 1e-5,
                "norm_momentum": 0.1},
    "decoder": {"hidden": None, "activation": "ELU", "output": "sigmoid", "reco_loss": "mse", "energy": "lognormal",
                "log_scale_min": -5.0, "log_scale_max": 1.0},
    "prior": {"kind": "standard", "n_bins": 1, "min_count": 50, "bank_size": 10000},
    "marginals": {"kind": "none", "n_bins": 15, "n_knots": 65, "grid": 128, "margin": 0.25, "min_hits": 50,
                  "samples_per_shower": 4, "reference_showers": 20000},
    "optimizer": {"lr": 1e-3, "weight_decay": 0.0, "plateau": None},
}


def is_legacy(hparams: Mapping[str, Any]) -> bool:
    """True for hyper-parameters written before the split (no head / voxel map `_target_`)."""
    return hparams.get("head") is None or hparams.get("voxel_map") is None or "marginals" in hparams


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Old CaloVAE hyper-parameters -> new ones; new ones come back unchanged."""
    hp = dict(hparams)
    if not is_legacy(hp):
        return hp
    old = {k: {**_OLD_DEFAULTS[k], **dict(hp.get(k) or {})} for k in _OLD_DEFAULTS}
    dec = old["decoder"]
    output = dec["output"]
    key = (output, None if output == "sigmoid" else dec["energy"])
    if key not in _HEADS:
        raise ConfigError(f"model.decoder.output/energy: expected sigmoid, or hurdle with lognormal|weibull; "
                          f"found {output!r}/{dec['energy']!r}")
    head: dict[str, Any] = {"_target_": f"{_PKG}.{_HEADS[key]}"}
    if output == "sigmoid":
        head["reco_loss"] = dec["reco_loss"]
    else:
        head.update(log_scale_min=dec["log_scale_min"], log_scale_max=dec["log_scale_max"])
    kind = old["prior"]["kind"]
    if kind not in _PRIORS:
        raise ConfigError(f"model.prior.kind: expected one of {tuple(_PRIORS)}, found {kind!r}")
    cls = _PRIORS[kind]
    prior = {"_target_": f"{cls.__module__}.{cls.__name__}", **{k: old["prior"][k] for k in _PRIOR_KEYS[kind]}}
    mkind = old["marginals"]["kind"]
    if mkind not in _MAPS:
        raise ConfigError(f"model.marginals.kind: expected one of {tuple(_MAPS)}, found {mkind!r}")
    vmap = {"_target_": f"{_PKG}.{_MAPS[mkind]}", **{k: old["marginals"][k] for k in _MAP_KEYS[mkind]}}
    hp.pop("marginals", None)
    hp.update(encoder=old["encoder"], decoder={"hidden": dec["hidden"], "activation": dec["activation"]},
              head=head, prior=prior, voxel_map=vmap, optimizer=old["optimizer"])
    hp.setdefault("condition", {"e_min_mev": 256.0, "e_max_mev": 4194304.0})
    hp.setdefault("calibration", "none")
    hp.setdefault("readout_threshold_mev", 0.0)
    for name in ("preprocessing", "loss"):
        hp[name] = dict(hp.get(name) or {})
    return hp


def upgrade_state_dict(state: dict[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> None:
    """In place: `generator.marginals.*` -> `generator.voxel_map.*`; in the prior and the voxel map, drop
    buffers the configured class does not have (the old classes carried every kind's) and add missing ones
    (a checkpoint from before the voxel map loads with it unfitted, a no-op)."""
    for name in [k for k in state if k.startswith("generator.marginals.")]:
        state["generator.voxel_map." + name.removeprefix("generator.marginals.")] = state.pop(name)
    for prefix in ("generator.prior.", "generator.voxel_map."):
        for name in [k for k in state if k.startswith(prefix) and k not in current]:
            del state[name]
        for name, value in current.items():
            if name.startswith(prefix):
                state.setdefault(name, value)


def LatentPrior(latent_dim: int, kind: str = "standard", n_bins: int = 1, min_count: int = 50,  # noqa: N802
                bank_size: int = 10000) -> _Base:
    """The pre-split constructor: a prior of the given kind (new code names the class instead)."""
    if kind not in _PRIORS:
        raise ConfigError(f"model.prior.kind: expected one of {tuple(_PRIORS)}, found {kind!r}")
    args = {"n_bins": n_bins, "min_count": min_count, "bank_size": bank_size}
    return _PRIORS[kind](latent_dim, **{k: args[k] for k in _PRIOR_KEYS[kind]})
