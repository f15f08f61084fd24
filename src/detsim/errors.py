"""detsim's own exceptions.

Errors a user can cause (bad path, missing key, wrong shape, NaN, wrong units) are raised as one of
these, so the CLI can print one line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DetsimError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(DetsimError):
    """A configuration value is missing or inconsistent."""


class DataFileError(DetsimError):
    """A data file is missing, unreadable or does not hold what was expected.

    The message always names the file, the key inside it, what was expected and what was found.
    """

    def __init__(self, path: str | Path, key: str | None, expected: str, found: str) -> None:
        self.path = str(path)
        self.key = key
        self.expected = expected
        self.found = found
        where = f"{self.path}" + (f" [{key}]" if key else "")
        super().__init__(f"{where}: expected {expected}, found {found}")
