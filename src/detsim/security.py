"""Safe handling of untrusted inputs: checkpoints and output paths.

A checkpoint is a pickle; unpickling runs arbitrary code. Every checkpoint detsim reads goes through
`torch.load(weights_only=True)`, which only rebuilds tensors and plain containers and refuses anything else.
Output folders named in configs are resolved (symlinks, `..`) and checked before the first byte is written.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from detsim.errors import DataFileError

CHECKPOINT_EXPECTED = "a checkpoint holding only tensors and plain Python containers (torch.load weights_only=True)"


class UnsafeCheckpointError(DataFileError):
    """A checkpoint asks to unpickle objects other than tensors and plain containers."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; raise a DataFileError naming the file if it is unsafe or unreadable."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataFileError(path, None, "an existing checkpoint file", "no such file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(path, None, CHECKPOINT_EXPECTED, f"a disallowed pickled object ({first})") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataFileError(path, None, "a torch checkpoint", f"unreadable data ({exc})") from exc
    if not isinstance(checkpoint, dict):
        raise DataFileError(path, None, "a dict checkpoint", type(checkpoint).__name__)
    return checkpoint


def checked_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Resolve `path` (user, symlinks, `..`), create it, and check it is a writable folder; return the resolved path."""
    resolved = Path(os.path.expandvars(str(path))).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise DataFileError(resolved, None, f"a folder for the {what}", "an existing file")
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DataFileError(resolved, None, f"a writable location for the {what}", f"{existing} is not writable")
    try:
        resolved.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # /proc, read-only mounts: os.access says yes to root, mkdir says no
        raise DataFileError(resolved, None, f"a writable location for the {what}", exc.strerror) from None
    return resolved
