"""Checkpoints written before the VAE package split (tests/fixtures/README.md) load and generate as they did.

The stored showers were drawn from torch's own stream, which `random_stream="torch"` keeps (uniforms.py)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from detsim.generate import load_generator
from detsim.models.vae import CaloVAE

FIXTURES = Path(__file__).parent / "fixtures"
ENERGIES = torch.tensor([256.0, 1024.0, 8192.0, 65536.0, 524288.0, 4194304.0] * 2)
OLD = {  # fixture -> the classes its string-chosen options translate to
    "default": ("WeibullHurdleHead", "FittedPrior", "QuantileVoxelMap"),
    "sigmoid_aggregate_affine": ("SigmoidHead", "AggregatePrior", "AffineVoxelMap"),
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_old_checkpoint_loads_and_generates_the_same_showers(name, one_thread, tmp_path):
    path = FIXTURES / f"calo_vae_{name}_v0.ckpt"
    old_hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert "marginals" in old_hparams and "kind" in old_hparams["prior"]  # really the old format
    model = CaloVAE.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    gen = model.generator
    gen.random_stream = "torch"
    assert (type(gen.decoder.head).__name__, type(gen.prior).__name__, type(gen.voxel_map).__name__) == OLD[name]
    assert gen.voxel_map.active  # the fitted map came through the rename
    want = np.load(FIXTURES / f"calo_vae_{name}_v0_showers.npy")
    got = model.sample(ENERGIES, torch.Generator().manual_seed(7)).numpy()
    assert (want > 0).sum() > 100 and np.array_equal(got, want)
    # re-saved, the checkpoint is in the new format (`_target_` configs) and still generates the same
    new = tmp_path / "new.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": L.__version__}, new)
    hp = torch.load(new, weights_only=True)["hyper_parameters"]
    assert "marginals" not in hp and hp["head"]["_target_"].endswith(OLD[name][0])
    again = CaloVAE.load_from_checkpoint(new, weights_only=True).eval()
    again.generator.random_stream = "torch"
    assert np.array_equal(again.sample(ENERGIES, torch.Generator().manual_seed(7)).numpy(), want)


def test_detsim_generate_loads_an_old_checkpoint(one_thread):
    loaded = load_generator(FIXTURES / "calo_vae_default_v0.ckpt")
    assert loaded.n_voxels == 368
    want = np.load(FIXTURES / "calo_vae_default_v0_showers.npy")
    with torch.inference_mode():
        fast = loaded.module(ENERGIES, torch.Generator().manual_seed(7)).numpy()
        loaded.module.random_stream = "torch"
        got = loaded.module(ENERGIES, torch.Generator().manual_seed(7)).numpy()
    assert np.array_equal(got, want)
    # the default stream draws other uniforms: other showers, the same physics (the hit count within noise)
    assert not np.array_equal(fast, want) and abs(int((fast > 0).sum()) - int((want > 0).sum())) < 0.2 * (want > 0).sum()
