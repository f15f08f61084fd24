"""One conversion every config consumer needs: Hydra/OmegaConf containers to plain Python.

Library code takes plain mappings so it can be called without Hydra, and so checkpoints that store
these settings stay loadable with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from typing import Any

from detsim.errors import ConfigError
from omegaconf import DictConfig, ListConfig, OmegaConf


def to_plain(value: Any) -> Any:
    """DictConfig/ListConfig -> resolved dict/list; anything else is returned as it is."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def compose_config(config_name: str, overrides: "list[str] | tuple[str, ...]" = ()) -> DictConfig:
    """A primary config of `conf/` composed with Hydra overrides, as its CLI would see it (no app is run).

    For benchmarks, notebooks and tests that build one object from the config tree: loading a YAML file
    directly skips its defaults list (the VAE's head, prior and voxel map are config groups)."""
    from hydra import compose, initialize_config_dir

    from detsim.paths import config_dir

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
