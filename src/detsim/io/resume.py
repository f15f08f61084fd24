"""Long simulate/generate jobs that survive a kill: each block a file in `<stem>.partial/`, resumed on rerun.

A job writes every block it finishes as its own HDF5 file in the folder `<out stem>.partial/` beside `out`
(each through `atomic_output`, so a block file is complete or absent), and merges them into `out` at the end.
One growing HDF5 file is not enough: a kill -9 during a resize leaves its object headers half written and
the whole file unreadable (seen in tests/test_prod_nothing_lost.py). Killed (a SLURM time limit,
pre-emption, kill -9), a job leaves the folder; rerunning the same command checks that the same run wrote
it (the run's *fingerprint*: every setting that changes the showers) and continues after the last block.
Every block draws from its own seed, so the resumed file equals the one an uninterrupted job writes
(tested). `resume=false` starts over. The folder reads as shards: `reference='out.partial/*.h5'`.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from detsim.errors import DataFileError
from detsim.files import atomic_output, check_output_file
from detsim.io import iter_showers, open_output
from detsim.io.hdf5 import HDF5ShowerWriter, count_hdf5
from detsim.io.writer import ShowerWriter
from detsim.showers import CaloShowers

FINGERPRINT_FILE = "fingerprint.json"
LOCK_FILE = ".lock"
ATTRS_FILE = "attrs.json"
BLOCK_NAME = re.compile(r"^block_(\d{6})\.h5$")


def resumable_partial_path(target: Path) -> Path:
    """`<stem>.partial/` beside the target: visible (a user sees the unfinished job), skipped by shard globs."""
    return target.with_name(f"{target.stem}.partial")


def normalise_fingerprint(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as JSON gives them back (tuples become lists, paths strings), so stored == fresh."""
    return json.loads(json.dumps(dict(settings), sort_keys=True, default=str))


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(value, sort_keys=True, default=str))


class BlockFolderWriter(ShowerWriter):
    """Each `append` is one block file, renamed into the folder once complete; `attrs` persist beside them."""

    def __init__(self, folder: Path, n_voxels: int, attrs: Mapping[str, Any], blocks: list[Path]) -> None:
        self.folder, self.n_voxels, self.attrs = folder, n_voxels, dict(attrs)
        self.blocks = list(blocks)
        self.n_written = sum(count_hdf5(block) for block in self.blocks)
        self._saved_attrs: dict[str, Any] | None = None

    def append(self, chunk: CaloShowers) -> None:
        self._save_attrs()
        block = self.folder / f"block_{len(self.blocks):06d}.h5"
        with atomic_output(block) as partial:
            with HDF5ShowerWriter(partial, self.n_voxels, scratch=True) as writer:
                writer.append(chunk)
        self.blocks.append(block)
        self.n_written += len(chunk)

    def _save_attrs(self) -> None:
        """Attributes learnt during the run (the Geant4 version) outlive a kill, for the final merge."""
        if self.attrs != self._saved_attrs:
            _write_json(self.folder / ATTRS_FILE, self.attrs)
            self._saved_attrs = dict(self.attrs)

    def close(self) -> None:
        self._save_attrs()


def _blocks(folder: Path) -> list[Path]:
    """The folder's block files, which must be block_000000 ... block_k without a gap."""
    numbered = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := BLOCK_NAME.match(p.name)))
    for expected, (index, path) in enumerate(numbered):
        if index != expected:
            raise DataFileError(folder, None, "block files numbered from 0 without a gap (resume=false to start over)",
                                f"{path.name} after {expected} blocks")
    return [path for _, path in numbered]


def _differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _resumed(folder: Path, n_voxels: int, fingerprint: dict[str, Any], attrs: Mapping[str, Any]) -> BlockFolderWriter | None:
    """The block folder of this same run, ready to continue; None when there is nothing to continue."""
    stored_file = folder / FINGERPRINT_FILE
    if not stored_file.is_file():
        return None  # killed before the first write: nothing to keep
    stored = json.loads(stored_file.read_text())
    if stored != fingerprint:
        differing = _differing_keys(stored, fingerprint)
        if differing == ["settings"]:  # a config fingerprint: name the config keys
            differing = _differing_keys(stored["settings"], fingerprint["settings"])
        raise DataFileError(folder, FINGERPRINT_FILE, "the partial output of this same command to resume (or resume=false to start over)",
                            f"one written with other settings ({', '.join(differing)})")
    saved = folder / ATTRS_FILE
    writer = BlockFolderWriter(folder, n_voxels, {**attrs, **(json.loads(saved.read_text()) if saved.is_file() else {})},
                               _blocks(folder))
    if writer.n_written:
        print(f"resuming {folder}: {writer.n_written} showers already written", file=sys.stderr)
    return writer


def _merge(writer: BlockFolderWriter, target: Path, root: Any, overwrite: bool) -> None:
    with open_output(target, writer.n_voxels, root=root, attrs=writer.attrs, overwrite=overwrite) as out:
        for block in writer.blocks:
            for chunk in iter_showers(block):
                out.append(chunk)


@contextmanager
def resumable_output(
    path: str | Path,
    n_voxels: int,
    fingerprint: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
    root: Any = None,
    overwrite: bool = False,
    resume: bool = True,
) -> Iterator[BlockFolderWriter]:
    """Yield a writer whose `n_written` showers are already done (0 for a fresh job); merge onto `path` on success.

    The caller skips the showers already written (whole appends: a block file is never cut). On an error or
    Ctrl-C the folder is kept (if it holds showers) and named on stderr; a kill -9 keeps it too.
    """
    target = check_output_file(path, overwrite)
    folder = resumable_partial_path(target)
    wanted = normalise_fingerprint(fingerprint)
    if folder.exists() and not folder.is_dir():
        folder.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(folder, None, "a writable output folder", exc.strerror or str(exc)) from None
    with _job_lock(folder):
        writer = _resumed(folder, n_voxels, wanted, attrs or {}) if resume else None
        if writer is None:
            for stale in folder.iterdir():  # another run's blocks (resume=false) or a job killed before its first block
                if stale.name != LOCK_FILE:
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            _write_json(folder / FINGERPRINT_FILE, wanted)
            writer = BlockFolderWriter(folder, n_voxels, attrs or {}, [])
        try:
            yield writer
            writer.close()
        except BaseException:
            if writer.n_written == 0:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                writer.close()
                print(f"kept {writer.n_written} showers in {folder}/: rerun the same command to resume", file=sys.stderr)
            raise
        _merge(writer, target, root, overwrite)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _job_lock(folder: Path) -> Iterator[None]:
    """One job per output: a second job on the same `out=` would merge and delete blocks the first still writes."""
    with open(folder / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataFileError(folder, None, "an output no other job is writing",
                                "it is locked by a running job with the same out=") from None
        yield
