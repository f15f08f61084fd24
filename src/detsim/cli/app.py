"""Shared plumbing for every detsim Hydra app: config location and user-error handling.

A DetsimError (bad file, key, shape, units) is printed as one line and the process exits with
status 2; set DETSIM_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import shutil
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from detsim.cli.console import tidy_console
from detsim.config import positive_int  # noqa: F401  (the CLIs import it from here)
from detsim.errors import ConfigError, DetsimError
from detsim.paths import config_dir

USER_ERROR_EXIT = 2


def user_error(exc: DetsimError) -> None:
    """Print the one-line message and exit with status 2 (the traceback only with DETSIM_DEBUG=1)."""
    print(f"detsim error: {exc}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


def _remove_bare_run_dir() -> None:
    """A failed run leaves no folder behind that holds only Hydra's own records (.hydra/, the job log)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return
    entries = list(run_dir.iterdir()) if run_dir.is_dir() else []
    if not all(e.name == ".hydra" or (e.is_file() and e.suffix == ".log") for e in entries):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:  # the dated folders above it, if this run made them and they are empty
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


class CheckRunDir(Callback):
    """Hydra callback: check the run (or sweep) folder is writable before Hydra creates it.

    Hydra makes its run folder before the task runs, so an unwritable `paths.output_dir` would otherwise
    end in a traceback from Hydra itself (`conf/hydra/*.yaml` and each app's `hydra.callbacks` list this).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir)

    @staticmethod
    def _check(folder: Any) -> None:
        from detsim.security import checked_output_dir

        try:
            checked_output_dir(str(folder), "run folder")
        except DetsimError as exc:
            if os.environ.get("DETSIM_DEBUG"):
                raise
            user_error(exc)


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
                _remove_bare_run_dir()
                user_error(exc)

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
