"""Shared test fixtures: paths to the public reference files and the config tree.

Torch runs single-threaded in tests: the models here are tiny, and two intra-op threads on a shared
2-core machine were measured 80x slower per step than one (thread oversubscription).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DETSIM_SHARED_DATA", REPO.parent / "shared" / "data"))
CONF = REPO / "conf"

torch.set_num_threads(1)


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



def vae_kwargs(*overrides: str, model: str = "calo_vae", head: str | None = None, prior: str | None = None,
               voxel_map: str | None = None, geometry: str = "calochallenge_ds1_photons") -> dict:
    """CaloVAE keyword arguments as `detsim-train model=<model>` composes them; head / prior / voxel_map
    pick an option of `conf/model/vae/<group>/`; `overrides` are Hydra overrides (`model.latent_dim=4`)."""
    from detsim.confutil import model_kwargs

    groups = [f"model/vae/{g}@model.{g}={v}" for g, v in (("head", head), ("prior", prior), ("voxel_map", voxel_map)) if v]
    return model_kwargs([f"model={model}", f"geometry={geometry}", *groups, *overrides])
