"""Shower CNNs: shapes on every geometry kind, periodic angular padding, and particle identification
trained on simulator showers (from memory and from CaloGAN-layout files)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from detsim.eval.particle_id import train_particle_id, train_particle_id_from_files
from detsim.geometry import load_geometry
from detsim.models.shower_cnn import LayerStackCNN, PerLayerCNN, _PeriodicConv, build_shower_cnn
from detsim.paths import config_dir
from detsim.showers import CaloShowers
from detsim.sim import quick_sample


def geometry(name: str):
    return load_geometry(config_dir() / "geometry" / f"{name}.yaml")


def cnn_config(**over) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):  # the backbone comes through defaults
        cfg = compose("evaluate", overrides=["reference=x", "generated=y"]).eval.cnn
    tiny = {"backbone": {"channels": [4, 8], "head": [32]}, "max_epochs": 4, "batch_size": 100,
            "lr": 3e-3, "enable_progress_bar": False, "num_threads": 1}
    return OmegaConf.to_container(OmegaConf.merge(cfg, tiny, over))


@pytest.mark.parametrize(
    "name, kind", [("calochallenge_ds1_photons", PerLayerCNN), ("calochallenge_ds2", LayerStackCNN), ("calogan", PerLayerCNN)]
)
def test_backbone_picks_the_layout_and_gives_one_logit(name, kind):
    g = geometry(name)
    net = build_shower_cnn(g, channels=[2, 4], head=[8])
    assert isinstance(net, kind)
    x = torch.rand(3, 1 + g.n_voxels)
    out = net(x)
    assert out.shape == (3,) and torch.isfinite(out).all()


def test_angular_padding_is_periodic():
    # rotating the shower by k angular bins rotates the feature map by k bins: no seam at alpha = +-pi
    torch.manual_seed(0)
    conv = _PeriodicConv(3, 1, 2, 3, periodic_axis=1)
    v = torch.rand(2, 1, 5, 16, 9)
    rolled = conv(torch.roll(v, 3, dims=3))
    assert torch.allclose(rolled, torch.roll(conv(v), 3, dims=3), atol=1e-6)
    # a zero-padded conv would not commute with the rotation
    plain = torch.nn.functional.leaky_relu(torch.nn.functional.conv3d(v, conv.conv.weight, conv.conv.bias, padding=1))
    assert not torch.allclose(plain, conv(v), atol=1e-4)
    # a ring narrower than the kernel (2 angular bins) still wraps consistently
    small = _PeriodicConv(2, 1, 1, 5, periodic_axis=0)(torch.rand(1, 1, 2, 4))
    assert small.shape == (1, 1, 2, 4)


def test_photon_vs_pion_identification():
    # both particles on the pion geometry (the dataset-1 photon and pion binnings differ)
    g = geometry("calochallenge_ds1_pions")
    photons = quick_sample("calochallenge_ds1_pions", "photon", n=800, seed=31)
    pions = quick_sample("calochallenge_ds1_pions", "pion", n=800, seed=32)
    result = train_particle_id(photons, pions, g, cnn_config(), seed=0)
    assert result.auc > 0.9
    assert result.background_efficiency < 0.2 and result.background_rejection > 5.0
    assert result.background_rejection == pytest.approx(1 / max(result.background_efficiency, 2 / result.n_test))


def write_calogan(path: Path, showers: CaloShowers, g) -> None:
    """A CaloGAN-layout file: layer_0..2 cell arrays, energy in GeV, overflow."""
    n = len(showers)
    with h5py.File(path, "w") as f:
        for i, layer in enumerate(g.layers):
            f[f"layer_{i}"] = showers.showers[:, g.layer_slice(i)].reshape(n, *layer.shape)
        f["energy"] = (showers.incident_energy / 1000.0).reshape(n, 1)
        f["overflow"] = np.zeros((n, 3))


def test_electron_vs_pion_from_calogan_files(tmp_path):
    g = geometry("calogan")
    e_file, pi_file = tmp_path / "eplus.h5", tmp_path / "piplus.h5"
    write_calogan(e_file, quick_sample("calogan", "electron", n=600, seed=41), g)
    write_calogan(pi_file, quick_sample("calogan", "pion", n=600, seed=42), g)
    plot = tmp_path / "roc.png"
    result = train_particle_id_from_files(e_file, pi_file, g, cnn_config(), seed=0, roc_plot=plot, labels=("e+", "pi+"))
    assert result.auc > 0.9
    assert plot.stat().st_size > 0
    assert set(result.metrics()) >= {"pid_auc", "pid_bkg_rejection_at_90"}
