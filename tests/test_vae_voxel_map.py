"""The per-voxel quantile map (detsim.models.vae.voxel_map): the map, its fit in training, its fast path."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf
from test_vae_model import THRESHOLD, make_model, toy_showers
from test_vae_sampling_speed import default_model, energies, reference_generate

from detsim.errors import ConfigError
from detsim.models.vae import CaloVAE
from detsim.models.vae.module import build
from detsim.models.vae.voxel_map import VoxelMap
from detsim.runtime.generator import apply_threshold


def make_map(kind: str, n_voxels: int, **overrides) -> VoxelMap:
    """The map of `conf/model/vae/voxel_map/<kind>.yaml`, with overrides."""
    cfg = {**OmegaConf.to_container(OmegaConf.load(CONF / "model" / "vae" / "voxel_map" / f"{kind}.yaml")), **overrides}
    return build(cfg, "voxel_map", VoxelMap, n_voxels=n_voxels)


def lognormal_hits(n: int, n_vox: int, mu: float, sigma: float, p_hit: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    hits = torch.rand(n, n_vox, generator=g) < p_hit
    return torch.exp(torch.randn(n, n_vox, generator=g) * sigma + mu) * hits


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    return float(stats.ks_2samp(a, b).statistic)


@pytest.mark.parametrize("kind", ["quantile", "affine"])
def test_calibrated_hits_follow_the_reference_distribution_per_energy_bin(kind):
    n, n_vox = 30_000, 4
    c = torch.rand(n)
    # the reference differs between the two energy bins; the generator is too wide and shifted in both
    ref = torch.where((c < 0.5)[:, None], lognormal_hits(n, n_vox, -3.0, 0.5, 0.7, 1),
                      lognormal_hits(n, n_vox, -1.0, 0.3, 0.7, 2))
    gen = lognormal_hits(n, n_vox, -2.0, 1.0, 0.7, 3)
    cal = make_map(kind, n_vox, n_bins=2)
    cal.fit(c, ref, c, gen)
    e_inc = torch.full((n, 1), 1000.0)
    fresh = lognormal_hits(n, n_vox, -2.0, 1.0, 0.7, 4)  # a new draw of the generator, not the fitted one
    out = cal(fresh * 1000.0, e_inc, c) / 1000.0
    assert torch.equal(out > 0, fresh > 0)  # empty voxels stay empty, hits stay hits
    for low_bin in (True, False):
        rows = (c < 0.5) if low_bin else (c >= 0.5)
        for v in range(n_vox):
            r, o, f = (x[rows, v][x[rows, v] > 0].log().numpy() for x in (ref, out, fresh))
            assert ks_distance(f, r) > 0.3              # before: clearly a different distribution
            assert ks_distance(o, r) < 0.03             # after: the reference's (both are log-normal here)
    # within a bin the map is monotone: it keeps the generated rank order of every voxel, so the
    # correlations between voxels stay those the generator made
    v0 = (fresh[:, 0] > 0) & (c < 0.5)
    order_before = torch.argsort(fresh[v0, 0])
    assert torch.all(torch.diff(out[v0, 0][order_before]) >= 0)


def test_voxels_with_too_few_hits_are_left_as_generated():
    n = 5000
    c = torch.rand(n)
    ref = lognormal_hits(n, 2, -3.0, 0.5, 0.8, 1)
    gen = lognormal_hits(n, 2, -2.0, 1.0, 0.8, 2)
    gen[:, 1] *= torch.rand(n) < 0.002  # ~10 hits in voxel 1: too few to fit
    cal = make_map("quantile", 2, n_bins=1, min_hits=50)
    cal.fit(c, ref, c, gen)
    out = cal(gen * 100.0, torch.full((n, 1), 100.0), c) / 100.0
    assert torch.allclose(out[:, 1], gen[:, 1], rtol=1e-5)
    assert not torch.allclose(out[:, 0], gen[:, 0], rtol=1e-2)


def test_unfitted_or_disabled_calibration_changes_nothing():
    x = lognormal_hits(10, 3, -2.0, 1.0, 0.5, 0)
    for kind in ("quantile", "affine", "none"):
        assert make_map(kind, 3)(x, torch.ones(10, 1), torch.rand(10)) is x
    with pytest.raises(ConfigError, match="model.voxel_map.n_bins"):
        make_map("quantile", 3, n_bins=0)


def test_fast_sampling_path_equals_calibrating_the_finished_showers():
    """The generator maps log fractions inside the sampler; the same map on its MeV output agrees."""
    model = default_model("model.voxel_map.min_hits=20")
    e = energies(4000)
    with torch.inference_mode():
        reference = model.sample(e, torch.Generator().manual_seed(5)) * 1.3  # a reference 30% hotter
        model.fit_voxel_map(e, reference)
    gen = model.generator
    assert gen.voxel_map.active
    with torch.inference_mode():
        fast = model.sample(e[:1000], torch.Generator().manual_seed(9))
        plain = reference_generate(gen, e[:1000], torch.Generator().manual_seed(9))
        slow = apply_threshold(gen.voxel_map(plain, e[:1000, None], gen.condition.forward(e[:1000])),
                               gen.threshold_mev)
    assert torch.equal(fast > 0, slow > 0)
    assert torch.allclose(fast, slow, rtol=1e-4)
    # and the map did its job: the generated hits now carry the reference's energies
    hits = fast > 0
    ratio = float(fast[hits].sum() / plain[hits].sum())
    assert ratio == pytest.approx(1.3, rel=0.05)


def test_training_fits_the_calibration_on_validation_showers_and_checkpoints_it(tmp_path):
    e, s = toy_showers(512)
    data = torch.utils.data.DataLoader(
        [{"incident_energy": e[i : i + 64], "showers": s[i : i + 64]} for i in range(0, 512, 64)], batch_size=None)
    model = make_model(f"model.readout_threshold_mev={THRESHOLD}", "model.prior.n_bins=3", "model.encoder.input_norm=true",
                       "model.preprocessing.mode=logit", "model.voxel_map.n_bins=3", "model.voxel_map.min_hits=10",
                       "model.voxel_map.reference_showers=256", head="hurdle_weibull", prior="fitted", voxel_map="quantile")
    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path,
                        callbacks=[L.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    trainer.fit(model, data, data)
    vmap = model.generator.voxel_map
    assert vmap.active
    model.eval()
    energies_ = torch.full((256,), 4096.0)
    out = model.sample(energies_, torch.Generator().manual_seed(1))
    assert out.min() >= 0 and not torch.any((out > 0) & (out < THRESHOLD))
    with vmap.disabled():
        raw = model.sample(energies_, torch.Generator().manual_seed(1))
    # the map moves energies, never creates a hit (it may push one below the threshold, which is cut)
    assert not torch.equal(out, raw) and not torch.any((out > 0) & (raw == 0))
    loaded = CaloVAE.load_from_checkpoint(trainer.checkpoint_callback.last_model_path).eval()
    assert torch.equal(loaded.sample(energies_, torch.Generator().manual_seed(1)), out)


def test_bin_by_bin_map_equals_the_one_gather_map_bit_for_bit():
    """Eager generation maps rows bin by bin (cache-friendly); graphs use one gather: same numbers."""
    model = default_model("model.voxel_map.min_hits=20")
    e = energies(3000)
    with torch.inference_mode():
        model.fit_voxel_map(e[:1500], model.sample(e[:1500], torch.Generator().manual_seed(5)) * 1.3)
        vmap = model.generator.voxel_map
        y = torch.randn(len(e), 368, generator=torch.Generator().manual_seed(1)) - 6.0
        bins = torch.as_tensor(np.random.default_rng(2).integers(0, vmap.n_bins, len(e)))
        binned, rows = vmap.map_log(y.clone(), bins, by_bin=True), vmap.map_log(y.clone(), bins)
    assert not torch.equal(binned, y) and torch.equal(binned, rows)
