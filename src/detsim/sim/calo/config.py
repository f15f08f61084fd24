"""Turn the composed `simulate` config into what the simulator needs: geometry, detector, spectrum, particle.

A detector, spectrum or particle left null is taken from the geometry config's `detector`, `spectrum`
and `particle` keys, so `geometry=calochallenge_ds2` alone is a complete choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from detsim.config import to_plain
from detsim.errors import ConfigError
from detsim.geometry import Geometry, load_geometry
from detsim.paths import config_dir


@dataclass(frozen=True)
class SimulationPlan:
    geometry: Geometry
    detector: dict[str, Any]
    spectrum: dict[str, Any]
    particle: str


def _group_file(group: str, name: str) -> dict[str, Any]:
    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        raise ConfigError(f"key {group!r}: expected one of {options}, found {name!r} (no {path})")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def _section(cfg: Mapping[str, Any], key: str, geometry_cfg: Mapping[str, Any]) -> dict[str, Any]:
    value = cfg.get(key)
    if isinstance(value, (Mapping, DictConfig)) and value:
        return dict(to_plain(value))
    name = value if isinstance(value, str) else geometry_cfg.get(key)
    if not name:
        raise ConfigError(
            f"key {key!r}: expected a {key} config (e.g. {key}=<name>) or a {key!r} key in geometry "
            f"{geometry_cfg.get('name')!r}, found none"
        )
    return _group_file(key, str(name))


def plan_from_config(cfg: DictConfig | Mapping[str, Any]) -> SimulationPlan:
    """Resolve geometry, detector (with the simulator's model coefficients), spectrum and particle."""
    geometry_cfg = cfg.get("geometry")
    if geometry_cfg is None:
        raise ConfigError("key 'geometry': expected a geometry config, found none")
    geometry_plain = dict(to_plain(geometry_cfg))
    geometry = load_geometry(geometry_plain)
    detector = _section(cfg, "detector", geometry_plain)
    simulator = cfg.get("simulator") or {}
    if "model" not in detector and simulator.get("model") is not None:
        model = simulator["model"]
        detector["model"] = dict(to_plain(model))
    spectrum = _section(cfg, "spectrum", geometry_plain)
    particle = cfg.get("particle") or geometry.particle
    if not particle:
        raise ConfigError(f"key 'particle': expected photon, electron or pion (geometry {geometry.name!r} names none), found none")
    return SimulationPlan(geometry, detector, spectrum, str(particle))


def compose_simulate_config(overrides: list[str]) -> DictConfig:
    """Compose conf/simulate.yaml with Hydra's compose API (inside a running Hydra app too)."""
    if GlobalHydra.instance().is_initialized():
        return compose("simulate", overrides=overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("simulate", overrides=overrides)
