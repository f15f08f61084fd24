"""Settings measured from the training data (threshold, incident-energy range, voxel scale), on hand-made showers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import vae_kwargs
from detsim.data.settings import measure_settings
from detsim.errors import ConfigError
from detsim.models.vae import CaloVAE
from detsim.showers import CaloShowers

E_INC = np.array([1000.0, 5000.0, 20000.0], dtype=np.float32)


def hand_made() -> CaloShowers:
    showers = np.zeros((3, 368), dtype=np.float32)
    showers[0, :3] = [0.7, 120.0, 0.0]      # 0.12 of E_inc in one voxel: the voxel scale
    showers[1, 5:8] = [0.66, 50.0, 300.0]   # 0.66 MeV: the smallest non-zero voxel
    showers[2, 10:12] = [1.5, 2000.0]
    return CaloShowers(E_INC, showers)


def test_threshold_energy_range_and_voxel_scale_of_hand_made_showers():
    s = measure_settings([hand_made()])
    assert s.threshold_mev == pytest.approx(0.66)
    assert (s.e_min_mev, s.e_max_mev) == (1000.0, 20000.0)
    assert s.voxel_scale == pytest.approx(0.12)
    assert s.n_showers == 3


def test_chunks_and_datamodule_batches_give_the_same_settings():
    data = hand_made()
    chunks = [CaloShowers(data.incident_energy[i:i + 1], data.showers[i:i + 1]) for i in range(3)]
    batches = [{"incident_energy": torch.as_tensor(data.incident_energy[::-1].copy()),
                "showers": torch.as_tensor(data.showers[::-1].copy())}]
    assert measure_settings(chunks) == measure_settings(batches) == measure_settings([data])


def test_nothing_to_measure_is_a_one_line_error():
    empty = CaloShowers(E_INC, np.zeros((3, 368), dtype=np.float32))
    with pytest.raises(ConfigError, match="no non-zero voxel"):
        measure_settings([empty], "train split of x.h5")


def test_model_takes_null_settings_from_the_data_and_never_generates_below_the_threshold():
    kwargs = vae_kwargs("model.readout_threshold_mev=null", "model.condition.e_min_mev=null",
                        "model.condition.e_max_mev=null", "model.preprocessing.scale=null", "model.encoder.hidden=[16,8]",
                        "model.latent_dim=4")
    model = CaloVAE(**kwargs).eval()
    with pytest.raises(ConfigError, match="not measured yet"):
        model.sample(torch.tensor([1000.0]))
    model.apply_settings(measure_settings([hand_made()]))
    hp = model.hparams
    assert hp["readout_threshold_mev"] == pytest.approx(0.66)
    assert (hp["condition"]["e_min_mev"], hp["condition"]["e_max_mev"]) == (1000.0, 20000.0)
    assert hp["preprocessing"]["scale"] == pytest.approx(0.12)
    assert model.generator.threshold_mev == pytest.approx(0.66) and model.condition.e_max_mev == 20000.0
    showers = model.sample(torch.full((256,), 3000.0), torch.Generator().manual_seed(1)).numpy()
    hits = showers[showers > 0]
    assert hits.size > 100 and hits.min() >= np.float32(0.66)


def test_set_values_are_kept():
    model = CaloVAE(**vae_kwargs("model.readout_threshold_mev=0.5", "model.encoder.hidden=[16,8]", "model.latent_dim=4"))
    assert model.unmeasured == [] and model.threshold == 0.5
