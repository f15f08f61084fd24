"""Safe handling of untrusted inputs: checkpoints.

A checkpoint is a pickle; unpickling runs arbitrary code. Every checkpoint detsim reads goes through
`torch.load(weights_only=True)`, which only rebuilds tensors and plain containers and refuses anything else.
Hyper-parameters read back from a checkpoint or a logged model may name only detsim's own classes
(`ALLOWED_TARGETS`, `check_targets`). Output folders named in configs are checked by `detsim.files`.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from detsim.errors import DataFileError

CHECKPOINT_EXPECTED = "a checkpoint holding only tensors and plain Python containers (torch.load weights_only=True)"


class UnsafeCheckpointError(DataFileError):
    """A checkpoint asks to unpickle objects other than tensors and plain containers."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; raise a DataFileError naming the file if it is unsafe or unreadable."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataFileError(path, None, "an existing checkpoint file", "no such file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(path, None, CHECKPOINT_EXPECTED, f"a disallowed pickled object ({first})") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataFileError(path, None, "a torch checkpoint", f"unreadable data ({exc})") from exc
    if not isinstance(checkpoint, dict):
        raise DataFileError(path, None, "a dict checkpoint", type(checkpoint).__name__)
    return checkpoint


# Classes and factories a checkpoint's hyper-parameters (or a logged model's config) may name. Hydra's
# `instantiate` imports and calls any `_target_`, nested ones included, so a planted checkpoint could
# otherwise run `os.system` the moment a model is rebuilt from it. This is the one list to extend when
# detsim gains a model or backbone.
ALLOWED_TARGETS: frozenset[str] = frozenset({
    "detsim.models.vae.CaloVAE",
    *(f"detsim.models.vae.heads.{name}" for name in ("SigmoidHead", "LogNormalHurdleHead", "WeibullHurdleHead")),
    *(f"detsim.models.vae.prior.{name}" for name in ("StandardPrior", "FittedPrior", "AggregatePrior")),
    *(f"detsim.models.vae.voxel_map.{name}" for name in ("IdentityVoxelMap", "AffineVoxelMap", "QuantileVoxelMap",
                                                         "VoxelCapMap")),
    *(f"detsim.models.vae.energy_map.{name}" for name in ("NoEnergyMap", "QuantileEnergyMap")),
    "detsim.models.pid.ParticleIdClassifier",
    "detsim.models.shower_cnn.build_shower_cnn",
    "detsim.models.shower_cnn.MLPBackbone",
})


def allowed_name(cls: type) -> str | None:
    """The allow-listed dotted name under which `cls` is importable (its public path), or None."""
    for name in sorted(ALLOWED_TARGETS):
        module_name, _, attr = name.rpartition(".")
        module = importlib.import_module(module_name)  # allow-listed detsim modules only
        if getattr(module, attr, None) is cls:
            return name
    return None


class DisallowedTargetError(DataFileError):
    """Hyper-parameters name a class or function outside detsim's allow-list."""


def check_targets(node: Any, source: str | Path, key: str = "hyper_parameters") -> None:
    """Refuse any `_target_` (at any depth) that is not in `ALLOWED_TARGETS`, before anything is imported."""
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and str(target) not in ALLOWED_TARGETS:
            raise DisallowedTargetError(source, f"{key}._target_", f"one of detsim's own classes "
                                        f"({', '.join(sorted(ALLOWED_TARGETS))})", repr(str(target)))
        for name, value in node.items():
            if name != "_target_":
                check_targets(value, source, f"{key}.{name}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_targets(value, source, f"{key}[{i}]")

