"""Which detsim made a file or a run: its version and git commit, also when installed from a wheel.

A source checkout asks git directly. An installed wheel has no `.git`, so the build writes the commit into
`detsim/_build_info.py` (`setup.py`, `write_build_info`) and it is read back here. Without either the
commit is None, never an error: provenance must not stop a job.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import detsim

try:  # written into a built wheel by `write_build_info`; a source checkout has none
    from detsim import _build_info  # type: ignore[attr-defined]
except ImportError:
    _build_info = None

BUILD_INFO_MODULE = "_build_info.py"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(folder: Path, *args: str) -> str | None:
    """`git -C folder args...` stdout, or None when git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit_of_checkout(package_dir: Path) -> str | None:
    """HEAD of the git work tree whose `src/detsim` is `package_dir`, with `-dirty` for uncommitted changes."""
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None or (Path(top) / "src" / "detsim").resolve() != package_dir.resolve():
        return None  # e.g. a wheel installed into a venv that happens to sit inside some repository
    head = _git(package_dir, "rev-parse", "HEAD")
    if head is None:
        return None
    dirty = _git(package_dir, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return f"{head}-dirty" if dirty else head


def write_build_info(project_dir: Path, package_build_dir: Path) -> Path | None:
    """Write `_build_info.py` (the commit of `project_dir`) into a built package; None when git knows nothing."""
    commit = commit_of_checkout(project_dir / "src" / "detsim")
    if commit is None:
        return None
    target = package_build_dir / BUILD_INFO_MODULE
    target.write_text(f'"""Written at build time by detsim.provenance.write_build_info."""\n\nGIT_COMMIT = {commit!r}\n')
    return target


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit this detsim was built from: live from git in a checkout, else recorded at build time."""
    commit = commit_of_checkout(_PACKAGE_DIR)
    if commit is not None:
        return commit
    return getattr(_build_info, "GIT_COMMIT", None)


def detsim_version() -> str:
    return detsim.__version__


def provenance() -> dict[str, str]:
    """{"detsim_version": ..., "git_commit": ...} (the commit left out when unknown)."""
    info = {"detsim_version": detsim_version()}
    commit = git_commit()
    if commit:
        info["git_commit"] = commit
    return info
