"""A tidy console for every app: plain unwrapped lines in batch logs, no third-party noise a user cannot act on.

Batch jobs and pipelines write to files, where rich would wrap everything at 80 columns and cut printed
commands and paths mid-word; here a non-terminal gets a wide console instead. Lightning's advertising tips,
torch's LeafSpec deprecation (raised inside Lightning) and matplotlib's mathtext font notes repeat in every run
and say nothing about the user's job, so they are dropped at their source loggers and warning filters.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

PIPED_COLUMNS = 240  # wide enough for commands and paths; rules and tables stay readable


def output_is_terminal() -> bool:
    return sys.stdout.isatty()


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud" not in record.getMessage()


def tidy_console() -> None:
    """Idempotent; called by every Hydra app and pipeline before it prints anything."""
    if not output_is_terminal():
        os.environ.setdefault("COLUMNS", str(PIPED_COLUMNS))
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    logging.getLogger("matplotlib.mathtext").setLevel(logging.WARNING)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    for name, logger in list(logging.root.manager.loggerDict.items()):  # a logging config applied by a library
        if name.startswith("detsim") and isinstance(logger, logging.Logger):  # must not silence detsim's warnings
            logger.disabled = False
