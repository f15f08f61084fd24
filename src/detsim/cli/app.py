"""Shared plumbing for every detsim Hydra app: config location and user-error handling.

A DetsimError (bad file, key, shape, units) is printed as one line and the process exits with
status 2; so is a configuration error from Hydra or OmegaConf (unknown key, missing group option,
malformed override, a ??? value left unset). Set DETSIM_DEBUG=1 to see the traceback instead.
A SIGTERM or SIGINT ends the app's worker processes and exits with 128 + the signal number, keeping what
a rerun resumes from (`detsim.cli.signals`).
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import shutil
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from detsim.cli.config_errors import describe
from detsim.cli.console import tidy_console
from detsim.cli.help import app_help
from detsim.cli.signals import stopped_by_signals
from detsim.config import positive_int  # noqa: F401  (the CLIs import it from here)
from detsim.errors import ConfigError, DetsimError
from detsim.files import checked_output_dir
from detsim.paths import config_dir

USER_ERROR_EXIT = 2


def user_error(exc: DetsimError) -> None:
    """Print the one-line message and exit with status 2 (the traceback only with DETSIM_DEBUG=1)."""
    print(f"detsim error: {exc}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


def _debugging() -> bool:
    """DETSIM_DEBUG (or Hydra's own HYDRA_FULL_ERROR) set by the user: show full tracebacks."""
    return bool(os.environ.get("DETSIM_DEBUG") or os.environ.get("HYDRA_FULL_ERROR"))


@contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """Set (or, with None, remove) one environment variable for the block, then restore it."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


_FROM_TASK = "_detsim_raised_by_task"  # marks an exception the task raised, so entry() leaves it alone


def _remove_bare_run_dir() -> None:
    """A failed run leaves no folder behind that holds only Hydra's own records (.hydra/, the job log)."""
    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return
    cwd = Path.cwd().resolve()
    if run_dir.resolve() == cwd or run_dir.resolve() in cwd.parents:
        return  # hydra.run.dir=. (or above): the user's own folder is never removed
    entries = list(run_dir.iterdir()) if run_dir.is_dir() else []
    if not all(e.name == ".hydra" or (e.is_file() and e.suffix == ".log") for e in entries):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
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
        try:
            checked_output_dir(str(folder), "run folder")
        except DetsimError as exc:
            if os.environ.get("DETSIM_DEBUG"):
                raise
            user_error(exc)


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorate `task(cfg)` into a console-script entry point reading `conf/<config_name>.yaml`.

    Hydra reports its own composition errors (unknown key, missing option, bad override syntax) in
    several lines and exits 1; with HYDRA_FULL_ERROR set while Hydra composes (and unset while the
    task runs, so neither the task nor processes it starts see it) those errors reach `entry`, which
    prints them as one line and exits 2.
    """

    def wrap(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            tidy_console()
            debug = _debugging() and not hydra_raises
            try:
                with _env("HYDRA_FULL_ERROR", None if hydra_raises else os.environ.get("HYDRA_FULL_ERROR")):
                    return task(cfg)
            except DetsimError as exc:
                if debug:
                    raise
                _remove_bare_run_dir()
                user_error(exc)
            except OmegaConfBaseException as exc:  # a ??? left unset, a key removed with ~, a bad ${...}
                if debug:
                    raise
                _remove_bare_run_dir()
                user_error(ConfigError(describe(exc, sys.argv[1:], config_name)))
            except Exception as exc:
                setattr(exc, _FROM_TASK, True)
                raise

        hydra_main = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(guarded)
        hydra_raises = False

        @functools.wraps(task)
        def entry() -> Any:
            with stopped_by_signals():  # SIGTERM/SIGINT: workers ended, exit 128 + signal (detsim.cli.signals)
                return run_hydra()

        def run_hydra() -> Any:
            nonlocal hydra_raises
            if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
                print(app_help(os.path.basename(sys.argv[0]) or config_name, config_name))
                return None
            if _debugging():  # the full traceback, Hydra's frames included
                with _env("HYDRA_FULL_ERROR", "1"):
                    return hydra_main()
            hydra_raises = True
            try:
                with _env("HYDRA_FULL_ERROR", "1"):
                    return hydra_main()
            except (HydraException, OmegaConfBaseException) as exc:
                if getattr(exc, _FROM_TASK, False):
                    raise
                user_error(ConfigError(describe(exc, sys.argv[1:], config_name)))
            finally:
                hydra_raises = False

        return entry

    return wrap
