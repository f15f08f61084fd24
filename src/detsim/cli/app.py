"""Shared plumbing for every detsim Hydra app: config location and user-error handling.

A DetsimError (bad file, key, shape, units) is printed as one line and the process exits with
status 2; set DETSIM_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

from detsim.cli.console import tidy_console
from detsim.errors import DetsimError
from detsim.paths import config_dir

USER_ERROR_EXIT = 2


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorate `task(cfg)` into a console-script entry point reading `conf/<config_name>.yaml`."""

    def wrap(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            tidy_console()
            try:
                return task(cfg)
            except DetsimError as exc:
                if os.environ.get("DETSIM_DEBUG"):
                    raise
                print(f"detsim error: {exc}", file=sys.stderr)
                sys.exit(USER_ERROR_EXIT)

        hydra_main = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(guarded)

        @functools.wraps(task)
        def entry() -> Any:
            if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
                from detsim.cli.help import app_help

                print(app_help(os.path.basename(sys.argv[0]) or config_name, config_name))
                return None
            return hydra_main()

        return entry

    return wrap
