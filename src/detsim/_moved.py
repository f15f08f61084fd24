"""Old module paths kept importable after the room redesign (2026-11-30).

Checkpoints, pickled MLflow models and user scripts written before the move name classes by their old
module (`detsim.models.gw_cnn.GW1DCNN`, `detsim.eval.roc.roc_auc`, ...). This finder answers an import of an
old name with a module whose attributes are the new module's own objects, so unpickling and old imports get
the very same classes and functions. New code imports the new names; the table is the one place to look.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "detsim.confutil": "detsim.config",
    "detsim.eval.roc": "detsim.metrics.roc",
    "detsim.eval.separation": "detsim.metrics.separation",
    "detsim.eval.calibration": "detsim.metrics.isotonic",
    "detsim.eval.combine": "detsim.metrics.combination",
    "detsim.eval.plots": "detsim.metrics.plots",
    "detsim.eval.classifier": "detsim.eval.two_sample",
    "detsim.eval.matched_filter": "detsim.gw.matched_filter",
    "detsim.eval.template_bank": "detsim.gw.template_bank",
    "detsim.eval.gw_report": "detsim.gw.report",
    "detsim.io.g2net": "detsim.gw.io",
    "detsim.sim.gw": "detsim.gw",
    "detsim.sim.gw.noise": "detsim.gw.noise",
    "detsim.sim.gw.priors": "detsim.gw.priors",
    "detsim.sim.gw.waveform": "detsim.gw.waveform",
    "detsim.sim.gw.synth": "detsim.gw.synth",
    "detsim.data.gw_transforms": "detsim.gw.whiten",
    "detsim.data.g2net_datamodule": "detsim.gw.datamodule",
    "detsim.models.gw_cnn": "detsim.gw.cnn",
    "detsim.models.validation_plots": "detsim.eval.validation_plots",
    "detsim.models.marginals": "detsim.models.vae.voxel_map",
    "detsim.models.losses": "detsim.models.vae.losses",
    "detsim.tracking_server": "detsim.tracking.server",
    "detsim.faults": "detsim.training.faults",
    "detsim.hpo": "detsim.training.sweeper",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(f"{module.__name__} moved to {self.target}", DeprecationWarning, stacklevel=2)
        real = importlib.import_module(self.target)
        module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        if hasattr(real, "__path__"):
            module.__path__ = []  # a package alias: its old submodules resolve through MOVED too


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves the old dotted names of `MOVED` to aliases of the new modules."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new), is_package=fullname == "detsim.sim.gw")


def install() -> None:
    """Put the finder on `sys.meta_path` once (called by `detsim/__init__.py`)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
