"""Shared test fixtures: paths to the public reference files and the config tree.

Torch runs single-threaded in tests: the models here are tiny, and two intra-op threads on a shared
2-core machine were measured 80x slower per step than one (thread oversubscription).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DETSIM_SHARED_DATA", REPO.parent / "shared" / "data"))
CONF = REPO / "conf"

torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """torch on one intra-op thread for the test (bit-for-bit comparisons), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextmanager
def partial_output_kept() -> Iterator[None]:
    """A resumable job's `<out>.partial/` block folder survives its merge, so a test can cut it as a kill would."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
        yield


@pytest.fixture(scope="session")
def calochallenge_dir() -> Path:
    path = SHARED_DATA / "calochallenge"
    if not path.is_dir():
        pytest.skip(f"public CaloChallenge binning files not found at {path} (set DETSIM_SHARED_DATA)")
    return path


def write_photon_sample(tmp_path_factory: pytest.TempPathFactory, n: int, seed: int) -> Path:
    """A small dataset-1 photon file from the reference simulator, written by detsim's HDF5 writer."""
    from detsim.io import write_showers
    from detsim.sim import quick_sample

    path = tmp_path_factory.mktemp("showers") / "showers.h5"
    write_showers(path, quick_sample(geometry="calochallenge_ds1_photons", particle="photon", n=n, seed=seed))
    return path


# --- no test writes outside its tmp_path -----------------------------------------------------------------
_NOISE = ("__pycache__", ".pytest_cache", ".venv/", ".egg-info", ".import_linter_cache")


def repository_state() -> set[str] | None:
    """Every changed, untracked or ignored path of the checkout (caches aside); None outside a git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return {line for line in done.stdout.splitlines() if not any(n in line for n in _NOISE)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STATE_KEY] = repository_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_STATE_KEY, None)
    after = repository_state()
    if before is None or after is None or hasattr(session.config, "workerinput"):
        return
    new = sorted(after - before)
    if new:
        print("\nthe tests changed the repository tree (a test wrote outside its tmp_path):\n  " + "\n  ".join(new[:20]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_STATE_KEY = pytest.StashKey[set[str] | None]()


def vae_kwargs(*overrides: str, model: str = "calo_vae", head: str | None = None, prior: str | None = None,
               voxel_map: str | None = None, geometry: str = "calochallenge_ds1_photons") -> dict:
    """CaloVAE keyword arguments as `detsim-train model=<model>` composes them; head / prior / voxel_map
    pick an option of `conf/model/vae/<group>/`; `overrides` are Hydra overrides (`model.latent_dim=4`)."""
    from detsim.config import model_kwargs

    groups = [f"model/vae/{g}@model.{g}={v}" for g, v in (("head", head), ("prior", prior), ("voxel_map", voxel_map)) if v]
    return model_kwargs([f"model={model}", f"geometry={geometry}", *groups, *overrides])


@pytest.fixture(scope="session")
def g4_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Geant4 stand-in data sets (docs/geant4.md), built once per session (about a second)."""
    from detsim.sim.geant4.standin import build_standin

    root = tmp_path_factory.mktemp("g4data")
    build_standin(root)
    return root
