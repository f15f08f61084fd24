"""Converting a VAE checkpoint written before the package split into the current format, once (`detsim-upgrade-checkpoint`).

Before the split (commit d58063f) the head, prior and voxel map were chosen by strings: `decoder.output`
(sigmoid | hurdle) with `decoder.energy` (lognormal | weibull), `prior.kind` (standard | fitted | aggregate)
and `marginals.kind` (none | quantile | affine), with defaults in code; the voxel map's buffers were
`generator.marginals.*` and the prior and map carried every kind's buffers. Now each part is a config with a
`_target_`. detsim reads only the current format (no translation on load, docs/architecture.md); this module
is the one place that knows the old one: `upgrade_hparams` turns old hyper-parameters into new ones (the old
code's defaults live only here), `upgrade_state_dict` renames and trims old buffers, and `upgrade_checkpoint`
writes the converted file, after loading it into a `CaloVAE` to prove it is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from detsim.errors import ConfigError, DataFileError
from detsim.files import atomic_output, check_output_file
from detsim.models.vae import CaloVAE
from detsim.security import allowed_name, check_targets, load_checkpoint

COMMAND = "detsim-upgrade-checkpoint in=<old.ckpt> out=<new.ckpt>"
_PKG = "detsim.models.vae"
_HEADS = {("sigmoid", None): "heads.SigmoidHead", ("hurdle", "lognormal"): "heads.LogNormalHurdleHead",
          ("hurdle", "weibull"): "heads.WeibullHurdleHead"}
_PRIORS = {"standard": "prior.StandardPrior", "fitted": "prior.FittedPrior", "aggregate": "prior.AggregatePrior"}
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


def is_old(hparams: Mapping[str, Any]) -> bool:
    """True for hyper-parameters written before the split (no head / voxel map `_target_`)."""
    return hparams.get("head") is None or hparams.get("voxel_map") is None or "marginals" in hparams


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Old CaloVAE hyper-parameters -> new ones; new ones come back unchanged."""
    hp = dict(hparams)
    if not is_old(hp):
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
    prior = {"_target_": f"{_PKG}.{_PRIORS[kind]}", **{k: old["prior"][k] for k in _PRIOR_KEYS[kind]}}
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


def upgrade_state_dict(state: dict[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of `state` with `generator.marginals.*` renamed `generator.voxel_map.*` and, in the prior and the
    voxel map, the buffers the configured class does not have dropped (the old classes carried every kind's)
    and missing ones taken from `current` (a checkpoint from before the voxel map gets an unfitted one)."""
    state = dict(state)
    for name in [k for k in state if k.startswith("generator.marginals.")]:
        state["generator.voxel_map." + name.removeprefix("generator.marginals.")] = state.pop(name)
    for prefix in ("generator.prior.", "generator.voxel_map."):
        for name in [k for k in state if k.startswith(prefix) and k not in current]:
            del state[name]
        for name, value in current.items():
            if name.startswith(prefix):
                state.setdefault(name, value)
    return state


def upgrade_checkpoint(source: str | Path, target: str | Path, overwrite: bool = False) -> tuple[Path, bool]:
    """Write `source` converted to the current format at `target`; (target, whether anything was converted).

    A checkpoint already in the current format is written unchanged. The converted checkpoint is loaded into a
    `CaloVAE` (every weight and buffer present, none left over) before anything is written.
    """
    target = check_output_file(target, overwrite)
    checkpoint = load_checkpoint(source)
    hparams, state = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
    if not isinstance(hparams, dict) or not isinstance(state, dict):
        raise DataFileError(source, "hyper_parameters", "a CaloVAE checkpoint (hyper_parameters and state_dict)",
                            "neither" if hparams is None else type(hparams).__name__)
    check_targets({"_target_": allowed_name(CaloVAE), **hparams}, source)  # before anything is built from them
    try:
        new_hparams = upgrade_hparams(hparams)
        check_targets(new_hparams, source)
        model = CaloVAE(**new_hparams)
        new_state = upgrade_state_dict(state, model.state_dict())
        model.load_state_dict(new_state)
    except ConfigError as exc:
        raise DataFileError(source, "hyper_parameters", "a CaloVAE checkpoint", str(exc)) from exc
    except (KeyError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataFileError(source, "state_dict", "a CaloVAE checkpoint", f"{type(exc).__name__}: {first}") from exc
    new_hparams = dict(model.hparams)  # with every key the current CaloVAE saves
    changed = new_hparams != hparams or new_state.keys() != state.keys()
    with atomic_output(target) as tmp:
        torch.save({**checkpoint, "hyper_parameters": new_hparams, "state_dict": new_state}, tmp)
    return target, changed
