"""Writing any output file safely: the one temp-file-and-rename helper every writer uses (ground floor).

A file detsim writes (HDF5, ROOT, checkpoint, metrics.json, plot) first goes to a hidden temporary file in
its target folder and is renamed onto the target only once complete. A rename within one folder is atomic on
POSIX file systems, so a kill -9 at any moment leaves either the old file or the complete new one at the
target path, never a half-written file. Output folders named in configs (a run folder, an MLflow store) are
resolved (symlinks, `..`) and checked before the first byte is written (`checked_output_dir`). It sits on the ground
floor because every room writes files.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from detsim.errors import DataFileError

OVERWRITE_HINT = "a path that does not exist yet (or overwrite=true)"


def _partial_path(target: Path) -> Path:
    """`.name.partial-<pid><suffix>` beside the target: same folder (atomic rename), same suffix (format)."""
    return target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")


def check_output_file(target: str | Path, overwrite: bool = True) -> Path:
    """Check, before any work, that `target` can be written: folder chain, writability, no refused overwrite.

    Writability is tested by creating (and removing) a temporary file in the nearest existing folder, the
    only test that also holds for /proc, read-only mounts and ACLs. Nothing is left behind: missing
    folders are created only when the output is written.
    """
    target = Path(os.path.expandvars(str(target))).expanduser().absolute()
    if target.is_dir():
        raise DataFileError(target, None, "a file path for the output", "an existing folder")
    if target.exists() and not overwrite:
        raise DataFileError(target, None, OVERWRITE_HINT, "an existing file")
    folder = next(parent for parent in target.parents if parent.exists())
    if not folder.is_dir():
        raise DataFileError(target, None, "an output path inside a folder", f"{folder} is a regular file")
    probe = folder / _partial_path(target).name
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        probe.unlink()
    except FileExistsError:
        pass  # a writer of this process holds the temporary file: the folder is writable
    except OSError as exc:
        raise DataFileError(target, None, "a writable output folder", f"{folder}: {exc.strerror}") from None
    return target


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


@contextmanager
def atomic_output(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is synced and renamed onto `target`, on error removed."""
    target = check_output_file(target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(target, None, "a writable output folder", f"{target.parent}: {exc.strerror}") from None
    partial = _partial_path(target)
    try:
        yield partial
        if not partial.exists():
            raise DataFileError(target, None, "an output written by the writer", "nothing written")
        publish(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def publish(partial: Path, target: Path) -> None:
    """Sync a finished temporary file to disk, then rename it onto `target` (atomic within one folder)."""
    with open(partial, "rb") as handle:  # flush to disk before the rename makes it visible
        os.fsync(handle.fileno())
    os.replace(partial, target)
