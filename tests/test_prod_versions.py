"""The lower bounds in pyproject.toml are the ones the code needs: each API detsim calls that arrived in a given
release is read here, and the installed versions must satisfy the declared bounds."""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.version import Version

from conftest import REPO

# package -> (lowest version with every API below, the APIs as (object, parameter it must accept))
NEEDED = {
    "lightning": Version("2.6"),  # Trainer.fit(weights_only=...)
    "mlflow": Version("3.0"),     # mlflow.pytorch.log_model(name=...)
    "torch": Version("2.6"),      # torch.load(weights_only=...) allow-lists: torch.serialization.add_safe_globals
}


def _lower_bounds() -> dict[str, Version]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = {}
    for dep in map(Requirement, deps):
        lows = [Version(s.version) for s in dep.specifier if s.operator in (">=", "==", "~=")]
        if lows:
            bounds[dep.name] = max(lows)
    return bounds


def test_declared_lower_bounds_are_at_least_what_the_code_needs():
    bounds = _lower_bounds()
    for name, needed in NEEDED.items():
        assert bounds[name] >= needed, f"pyproject allows {name}>={bounds[name]}, the code needs >= {needed}"


def test_the_apis_behind_the_bounds_exist_in_the_installed_versions():
    import lightning.pytorch as L
    import mlflow.pytorch
    import torch.serialization

    assert "weights_only" in inspect.signature(L.Trainer.fit).parameters
    assert "name" in inspect.signature(mlflow.pytorch.log_model).parameters
    assert hasattr(torch.serialization, "add_safe_globals")
    for name, low in _lower_bounds().items():
        try:
            installed = Version(version(name).split("+")[0])
        except Exception:  # noqa: BLE001 - an optional package not installed here
            continue
        assert installed >= low, f"{name} {installed} installed, pyproject needs >= {low}"
