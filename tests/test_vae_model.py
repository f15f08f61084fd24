"""CaloVAE as a model: preprocessing round trips, generation contract, a few real training steps."""

from __future__ import annotations

import math

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from detsim.errors import ConfigError
from detsim.geometry import load_geometry
from detsim.models.vae import CaloVAE
from detsim.models.vae.transforms import EnergyCondition, VoxelTransform

from conftest import CONF, vae_kwargs

GEOMETRY = OmegaConf.to_container(OmegaConf.load(CONF / "geometry" / "calochallenge_ds1_photons.yaml"))
THRESHOLD = 0.02


def toy_showers(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse showers with E_tot ~ 0.9 E_inc and a readout threshold, shaped like the ds1 geometry."""
    g = torch.Generator().manual_seed(seed)
    geo = load_geometry(GEOMETRY)
    e = 2.0 ** torch.randint(8, 23, (n,), generator=g).float()
    r = torch.as_tensor(geo.cell_centres_polar[0], dtype=torch.float32)
    profile = torch.exp(-r / 40.0) * (torch.rand(n, geo.n_voxels, generator=g) < 0.6)
    s = profile * torch.rand(n, geo.n_voxels, generator=g)
    s = s / s.sum(1, keepdim=True) * (0.9 * e[:, None])
    return e, torch.where(s > THRESHOLD, s, torch.zeros_like(s))


def make_model(*overrides: str, **groups: str) -> CaloVAE:
    """`model=calo_vae_atlas` with Hydra overrides; groups: head=, prior=, voxel_map= options."""
    return CaloVAE(**vae_kwargs(*overrides, model="calo_vae_atlas", **groups))


@pytest.mark.parametrize("mode", ["fraction", "logit"])
def test_voxel_transform_round_trip(mode):
    e, s = toy_showers(16)
    t = VoxelTransform(mode=mode, alpha=1e-7)
    back = t.inverse(t.forward(s, e), e)
    assert torch.allclose(back, s, rtol=1e-3, atol=1e-3 * float(e.max()) * 1e-4)


def test_energy_condition_spans_unit_interval_and_inverts():
    cond = EnergyCondition(256.0, 4194304.0)
    e = torch.tensor([256.0, 2048.0, 4194304.0])
    c = cond.forward(e)
    assert c.shape == (3, 1) and c[0].item() == pytest.approx(0.0) and c[2].item() == pytest.approx(1.0)
    assert torch.allclose(cond.inverse(c), e, rtol=1e-5)
    with pytest.raises(ConfigError):
        EnergyCondition(10.0, 1.0)


@pytest.mark.parametrize("output", ["sigmoid", "hurdle_lognormal"])
def test_generation_is_non_negative_thresholded_and_seeded(output):
    model = make_model(f"model.readout_threshold_mev={THRESHOLD}", head=output).eval()
    e = torch.full((64,), 65536.0)
    a = model.sample(e, torch.Generator().manual_seed(3))
    b = model.sample(e, torch.Generator().manual_seed(3))
    c = model.sample(e, torch.Generator().manual_seed(4))
    assert a.shape == (64, 368) and torch.equal(a, b)
    assert a.min() >= 0 and not torch.any((a > 0) & (a < THRESHOLD))
    if output != "sigmoid":  # the sampling head draws new hits and energies for a new seed
        assert not torch.equal(a, c)


def test_bad_config_names_the_key():
    kwargs = vae_kwargs(model="calo_vae_atlas")
    with pytest.raises(ConfigError, match="model.head._target_"):  # not a head
        CaloVAE(**{**kwargs, "head": {"_target_": "detsim.models.vae.prior.FittedPrior"}})
    with pytest.raises(ConfigError, match="model.head: .*SigmoidHead does not take"):
        CaloVAE(**{**kwargs, "head": {"_target_": "detsim.models.vae.heads.SigmoidHead", "loss": "mse"}})
    with pytest.raises(ConfigError, match="model.head.reco_loss"):
        CaloVAE(**{**kwargs, "head": {"_target_": "detsim.models.vae.heads.SigmoidHead", "reco_loss": "l1"}})
    with pytest.raises(ConfigError, match="model: unknown keys \\['decoer'\\]"):
        CaloVAE(**kwargs, decoer={})


def test_checkpoint_targets_outside_detsim_are_refused_before_import(tmp_path):
    """A planted `_target_` in a checkpoint's hyper-parameters names the key and runs nothing."""
    marker = tmp_path / "ran"
    kwargs = vae_kwargs(model="calo_vae_atlas")
    for target in ("os.system", "builtins.exec", "subprocess.Popen", "detsim"):
        with pytest.raises(ConfigError, match="model.head._target_: expected a detsim class"):
            CaloVAE(**{**kwargs, "head": {"_target_": target, "command": f"touch {marker}"}})
    assert not marker.exists()


@pytest.mark.parametrize("output", ["sigmoid", "hurdle_lognormal"])
def test_few_training_steps_log_every_term_and_reduce_the_loss(output, tmp_path):
    e, s = toy_showers(512)
    data = torch.utils.data.DataLoader(
        [{"incident_energy": e[i : i + 64], "showers": s[i : i + 64]} for i in range(0, 512, 64)],
        batch_size=None,
    )
    model = make_model(
        f"model.readout_threshold_mev={THRESHOLD}", "model.prior.n_bins=3", "model.encoder.input_norm=true",
        f"model.preprocessing.mode={'fraction' if output == 'sigmoid' else 'logit'}", "model.loss.kl_warmup_steps=10",
        head=output, prior="fitted",
    )
    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                        default_root_dir=tmp_path, callbacks=[L.callbacks.ModelCheckpoint(dirpath=tmp_path)])
    first = trainer.validate(model, data, verbose=False)[0]["val/loss"]
    trainer.fit(model, data, data)
    metrics = trainer.callback_metrics
    expected = {"reco", "kl", "etot", "layer", "loss", "layer_0", "layer_12"}
    if output != "sigmoid":
        expected |= {"hit", "hit_energy"}
    for stage in ("train", "val"):
        assert {f"{stage}/{t}" for t in expected} <= set(metrics), sorted(metrics)
    assert float(metrics["val/loss"]) < first
    if output != "sigmoid":  # the fitted prior moved off N(0, I)
        assert model.generator.prior.loc.abs().sum() > 0
    # checkpoint round trip: the same generator comes back
    ckpt = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    loaded = CaloVAE.load_from_checkpoint(ckpt).eval()
    model.eval()
    energies = torch.full((8,), 4096.0)
    assert torch.equal(model.sample(energies, torch.Generator().manual_seed(1)),
                       loaded.sample(energies, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("energy", ["lognormal", "weibull"])
def test_hurdle_sampler_draws_the_distribution_it_is_trained_on(energy):
    """Hit rate and truncated energy quantiles of the sampler agree with scipy's distributions."""
    from scipy import stats

    from detsim.models.vae import LogNormalHurdleHead, WeibullHurdleHead

    head = (LogNormalHurdleHead if energy == "lognormal" else WeibullHurdleHead)(4, 1, None, -5.0, 1.0)
    n, p_hit, loc, s, lower = 200_000, 0.3, -2.0, 0.8, -3.0
    out = {"hit": torch.full((n, 1), math.log(p_hit / (1 - p_hit))), "loc": torch.full((n, 1), loc),
           "scale": torch.full((n, 1), s)}
    u = torch.rand(n, 1, generator=torch.Generator().manual_seed(0))
    frac = head.sample(out, torch.full((n, 1), lower), u).numpy().ravel()
    hits = frac[frac > 0]
    assert abs(len(hits) / n - p_hit) < 0.005
    assert hits.min() >= math.exp(lower) * (1 - 1e-6)
    if energy == "lognormal":
        dist = stats.truncnorm((lower - loc) / s, np.inf, loc=loc, scale=s)
        expected = dist.ppf([0.1, 0.5, 0.9])
    else:  # log x is Gumbel-min; truncated by conditioning x > e^lower
        k, lam = 1 / s, math.exp(loc)
        tail = stats.weibull_min(k, scale=lam).sf(math.exp(lower))
        expected = np.log(stats.weibull_min(k, scale=lam).isf(tail * (1 - np.array([0.1, 0.5, 0.9]))))
    assert np.quantile(np.log(hits), [0.1, 0.5, 0.9]) == pytest.approx(expected, abs=0.02)
