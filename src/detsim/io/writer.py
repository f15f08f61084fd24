"""The shower-writer interface; the temp-file-and-rename helpers it re-exports live in `detsim.files`."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from detsim.errors import DataFileError
from detsim.files import OVERWRITE_HINT, _partial_path, atomic_output, check_output_file  # noqa: F401
from detsim.showers import CaloShowers

class ShowerWriter:
    """Base of the HDF5 and ROOT writers; `n_written` counts the showers appended so far."""

    n_written: int = 0

    def append(self, chunk: CaloShowers) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "ShowerWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
