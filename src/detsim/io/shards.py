"""Shower sources made of shards: one path, a glob, or a list of either, read as one set of showers.

Wherever a shower file is taken (`data.path`, `reference=`, `detsim-convert input=`), a production's
shards can be given instead: `prod/g4_*.h5` or `[a.h5, b.h5]`. Globs are expanded in natural order
(shard2 before shard10) and skip `*.partial*` names, the incomplete output of a running or killed job;
name a job's partial folder explicitly (`out.partial/*.h5`) to read its completed blocks.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any, Iterable

from detsim.errors import DataFileError

GLOB_CHARS = re.compile(r"[*?\[]")


def _natural_key(path: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _items(source: Any) -> list[str]:
    if isinstance(source, (str, Path)):
        return [str(source)]
    if isinstance(source, Iterable):
        return [str(item) for item in source]
    raise DataFileError(str(source), None, "a shower file path, a glob or a list of them", type(source).__name__)


def expand_shards(source: Any) -> list[Path]:
    """The files `source` names, in order: a glob matching nothing, or an empty list, is a user error."""
    files: list[Path] = []
    for item in _items(source):
        if GLOB_CHARS.search(item):
            matches = sorted((m for m in glob.glob(item) if ".partial" not in Path(m).name), key=_natural_key)
            if not matches:
                raise DataFileError(item, None, "a glob matching at least one shower file", "no match")
            files += [Path(m) for m in matches]
        else:
            files.append(Path(item))
    if not files:
        raise DataFileError(str(source), None, "at least one shower file", "an empty list")
    return files


def is_single_file(source: Any) -> bool:
    """True when `source` is one plain path (no glob, not a list): the readers' fast path."""
    return isinstance(source, (str, Path)) and not GLOB_CHARS.search(str(source))
