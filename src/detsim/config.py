"""One conversion every config consumer needs: Hydra/OmegaConf containers to plain Python.

Library code takes plain mappings so it can be called without Hydra, and so checkpoints that store
these settings stay loadable with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf

import detsim
from detsim.errors import ConfigError
from detsim.paths import config_dir


def to_plain(value: Any) -> Any:
    """DictConfig/ListConfig -> resolved dict/list; anything else is returned as it is."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def compose_config(config_name: str, overrides: "list[str] | tuple[str, ...]" = ()) -> DictConfig:
    """A primary config of `conf/` composed with Hydra overrides, as its CLI would see it (no app is run).

    For benchmarks, notebooks and tests that build one object from the config tree: loading a YAML file
    directly skips its defaults list (the VAE's head, prior and voxel map are config groups)."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def model_kwargs(overrides: "list[str] | tuple[str, ...]" = ()) -> dict[str, Any]:
    """The `model` section of `detsim-train` with overrides, as plain keyword arguments of its class."""
    plain = OmegaConf.to_container(compose_config("train", overrides).model, resolve=True)
    return {k: v for k, v in plain.items() if k not in ("_target_", "_recursive_", "_convert_")}


def positive_int(value: Any, key: str, minimum: int = 1) -> int:
    """`value` as an int >= `minimum`, or a one-line ConfigError naming the key (n=abc, n=-5, n=0, n=1.5)."""
    text = str(value).strip()
    digits = text[1:] if text[:1] in "+-" else text
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not digits.isdigit():
        raise ConfigError(f"{key}: expected an integer >= {minimum}, found {value!r}")
    if int(text) < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, found {int(text)}")
    return int(text)


def flag(value: Any, key: str) -> bool:
    """`value` as a bool: true/false only. Why: `bool("no")` is True, so `overwrite=no` would overwrite."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected true or false, found {value!r}")


# keys that change how a run goes (where, how fast, how loud), never which showers it makes
RESULT_NEUTRAL_KEYS = ("out", "progress", "overwrite", "resume", "chunk_size", "n_workers", "hydra", "paths", "tracking_uri")
SPEED_KEYS = ("threads", "progress_interval_s", "verbose")


def run_fingerprint(cfg: DictConfig, ignore: tuple[str, ...] = RESULT_NEUTRAL_KEYS) -> dict[str, Any]:
    """Every setting that changes the showers (the resolved config less output and speed keys), plus the version.

    A resumed job continues a partial file only if this is unchanged (`detsim.io.resume`).
    """
    settings = {  # ignored keys are never resolved (paths.output_dir holds the time of day)
        key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], (DictConfig, ListConfig)) else cfg[key]
        for key in cfg if key not in ignore
    }
    for group in settings.values():  # speed and logging knobs of a group (simulator.threads, ...)
        if isinstance(group, dict):
            for key in SPEED_KEYS:
                group.pop(key, None)
    return {"settings": settings, "detsim_version": detsim.__version__}
