"""Checkpoints from before the VAE package split are converted once by `detsim-upgrade-checkpoint`
(tests/fixtures/README.md); detsim itself reads only the current format. The converted fixtures generate their
stored showers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from detsim.errors import ConfigError, DataFileError
from detsim.generate import load_generator
from detsim.models.vae import CaloVAE
from detsim.upgrade import is_old, upgrade_checkpoint, upgrade_hparams

FIXTURES = Path(__file__).parent / "fixtures"
OLD = FIXTURES / "calo_vae_default_v0.ckpt"
ENERGIES = torch.tensor([256.0, 1024.0, 8192.0, 65536.0, 524288.0, 4194304.0] * 2)
CLASSES = {  # fixture -> the classes its string-chosen options were converted to
    "default": ("WeibullHurdleHead", "FittedPrior", "QuantileVoxelMap"),
    "sigmoid_aggregate_affine": ("SigmoidHead", "AggregatePrior", "AffineVoxelMap"),
}


def assert_stored_showers(got: np.ndarray, name: str) -> None:
    """The fixture's stored showers: the same hits, energies to float rounding (another CPU's kernels may round
    differently; the pins of the old format differed by up to 1.5e-5 on this machine)."""
    want = np.load(FIXTURES / f"calo_vae_{name}_showers.npy")
    hit = want > 0
    assert hit.sum() > 1000 and np.array_equal(got > 0, hit)
    assert float((np.abs(got - want)[hit] / want[hit]).max()) < 1e-4


def test_the_command_converts_an_old_checkpoint_into_the_committed_fixture(tmp_path):
    old = torch.load(OLD, weights_only=True)
    assert is_old(old["hyper_parameters"]) and "marginals" in old["hyper_parameters"]  # really the old format
    assert any(k.startswith("generator.marginals.") for k in old["state_dict"])
    out = tmp_path / "new.ckpt"
    proc = subprocess.run([sys.executable, "-m", "detsim.cli.upgrade_checkpoint", f"in={OLD}", f"out={out}",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "converted to the current format" in proc.stdout
    new, committed = torch.load(out, weights_only=True), torch.load(FIXTURES / "calo_vae_default.ckpt", weights_only=True)
    assert new["hyper_parameters"] == committed["hyper_parameters"] and not is_old(new["hyper_parameters"])
    assert new["state_dict"].keys() == committed["state_dict"].keys()
    assert all(torch.equal(new["state_dict"][k], committed["state_dict"][k]) for k in new["state_dict"])
    # converting again changes nothing
    again, changed = upgrade_checkpoint(out, tmp_path / "again.ckpt")
    assert not changed and torch.load(again, weights_only=True)["hyper_parameters"] == new["hyper_parameters"]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_converted_fixtures_load_and_generate_their_stored_showers(name, one_thread, tmp_path):
    path = FIXTURES / f"calo_vae_{name}.ckpt"
    model = CaloVAE.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    gen = model.generator
    assert (type(gen.decoder.head).__name__, type(gen.prior).__name__, type(gen.voxel_map).__name__) == CLASSES[name]
    assert gen.voxel_map.active  # the fitted map came through the rename
    got = model.sample(ENERGIES, torch.Generator().manual_seed(7)).numpy()
    assert_stored_showers(got, name)
    # re-saved by this version, it is the same checkpoint
    resaved = tmp_path / "resaved.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": L.__version__}, resaved)
    assert torch.load(resaved, weights_only=True)["hyper_parameters"] == torch.load(path, weights_only=True)["hyper_parameters"]
    again = CaloVAE.load_from_checkpoint(resaved, weights_only=True).eval()
    assert np.array_equal(again.sample(ENERGIES, torch.Generator().manual_seed(7)).numpy(), got)


def test_detsim_generate_reads_the_converted_fixture_and_refuses_the_old_one(one_thread):
    loaded = load_generator(FIXTURES / "calo_vae_default.ckpt")
    assert loaded.n_voxels == 368
    with torch.inference_mode():
        assert_stored_showers(loaded.module(ENERGIES, torch.Generator().manual_seed(7)).numpy(), "default")
    with pytest.raises(DataFileError, match="before the VAE package split.*detsim-upgrade-checkpoint"):
        load_generator(OLD)


def test_a_checkpoint_without_voxel_map_buffers_gets_an_unfitted_map(tmp_path):
    """The state of a checkpoint from before the voxel map: the upgrade adds the (identity) tables, unfitted."""
    from conftest import vae_kwargs

    model = CaloVAE(**vae_kwargs("model.readout_threshold_mev=0.02", head="hurdle_lognormal", voxel_map="quantile"))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("generator.voxel_map.")}
    old = tmp_path / "old.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": L.__version__},
               old)
    with pytest.raises(RuntimeError, match="voxel_map"):  # detsim reads only complete checkpoints
        CaloVAE.load_from_checkpoint(old, weights_only=True)
    new, changed = upgrade_checkpoint(old, tmp_path / "new.ckpt")
    assert changed and not CaloVAE.load_from_checkpoint(new, weights_only=True).generator.voxel_map.active


def test_bad_old_values_are_named():
    old = torch.load(OLD, weights_only=True)["hyper_parameters"]
    with pytest.raises(ConfigError, match="decoder.output"):
        upgrade_hparams({**old, "decoder": {"output": "gan"}})
    with pytest.raises(ConfigError, match="prior.kind"):
        upgrade_hparams({**old, "prior": {"kind": "flow"}})


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "new.ckpt"
    out.write_bytes(b"keep")
    with pytest.raises(DataFileError, match="overwrite=true"):
        upgrade_checkpoint(OLD, out)
    assert out.read_bytes() == b"keep"
    upgrade_checkpoint(OLD, out, overwrite=True)
    assert not is_old(torch.load(out, weights_only=True)["hyper_parameters"])


def test_a_hostile_checkpoint_is_refused_before_anything_is_built(tmp_path):
    from detsim.security import DisallowedTargetError

    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"prior": {"kind": {"_target_": "os.mkdir", "path": str(marker)}}}},
               hostile)
    with pytest.raises(DisallowedTargetError, match="prior.kind._target_"):
        upgrade_checkpoint(hostile, tmp_path / "new.ckpt")
    assert not marker.exists() and not (tmp_path / "new.ckpt").exists()
