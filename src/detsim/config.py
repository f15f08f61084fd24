"""One conversion every config consumer needs: Hydra/OmegaConf containers to plain Python.

Library code takes plain mappings so it can be called without Hydra, and so checkpoints that store
these settings stay loadable with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def to_plain(value: Any) -> Any:
    """DictConfig/ListConfig -> resolved dict/list; anything else is returned as it is."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value
