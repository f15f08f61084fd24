"""Where detsim finds its Hydra configuration tree and its default run folders."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The repository root for an editable install, else the current working directory."""
    candidate = _PACKAGE_DIR.parents[1]
    if (candidate / "conf").is_dir() and (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def config_dir() -> Path:
    """The `conf/` tree: `DETSIM_CONFIG_DIR` if set, else the one beside the sources."""
    override = os.environ.get("DETSIM_CONFIG_DIR")
    if override:
        return Path(override).resolve()
    return project_root() / "conf"
