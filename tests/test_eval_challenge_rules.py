"""The rules by which detsim-evaluate agrees with the CaloChallenge's evaluate.py
(docs/studies/2026-11-30-evaluator-vs-official.md): the epoch kept is the one with the best validation
accuracy, not the lowest loss; inputs are unscaled; both samples pass the readout threshold first."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from torch import nn

from detsim.errors import ConfigError
from detsim.eval.two_sample import fit_classifier
from detsim.eval.suite import evaluate_showers
from detsim.geometry import load_geometry
from detsim.paths import config_dir
from detsim.showers import CaloShowers
from detsim.sim import quick_sample


def compose_evaluate(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose("evaluate", overrides=["reference=r.h5", "generated=g.h5", *overrides])


def noisy_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian classes with a quarter of the labels flipped: a wide network learns the
    flips by heart, so its validation loss climbs long before its validation accuracy stops moving."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    x = rng.normal(0.0, 1.0, (n, 8)).astype(np.float32)
    x[:, 0] += 1.2 * (2 * y - 1)
    flip = rng.random(n) < 0.25
    return x, np.where(flip, 1 - y, y).astype(np.float32)


FIT = {"lr": 1e-2, "batch_size": 32, "max_epochs": 25, "split": [0.4, 0.3, 0.3], "enable_progress_bar": False,
       "num_threads": 1}


def wide_mlp(dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 256), nn.LeakyReLU(), nn.Linear(256, 256), nn.LeakyReLU(), nn.Linear(256, 1),
                         nn.Flatten(0))


def val_accuracy(fit) -> float:
    return float(np.mean((fit.val_scores > 0.5) == fit.val_labels))


def test_kept_epoch_is_the_first_with_the_best_validation_accuracy_not_the_lowest_loss():
    x, y = noisy_labels(600, seed=0)
    by_acc = fit_classifier(wide_mlp, x, y, FIT | {"best_epoch_by": "accuracy"}, seed=0)
    by_loss = fit_classifier(wide_mlp, x, y, FIT | {"best_epoch_by": "loss"}, seed=0)
    acc = [h["val/acc"] for h in by_acc.history]
    loss = [h["val/loss"] for h in by_loss.history]
    assert len(acc) == len(loss) == FIT["max_epochs"]
    # the over-fitting network: loss is lowest early and then climbs well above its minimum
    assert int(np.argmin(loss)) < FIT["max_epochs"] // 2 and loss[-1] > 1.2 * min(loss)
    assert by_acc.best_epoch == int(np.argmax(acc))  # argmax: the first of equals, as the challenge
    assert by_loss.best_epoch == int(np.argmin(loss))
    assert by_acc.best_epoch != by_loss.best_epoch  # the two rules keep different epochs here
    # the weights restored are the kept epoch's: its validation accuracy is the recorded best
    assert val_accuracy(by_acc) == pytest.approx(max(acc), abs=1e-6)
    assert val_accuracy(by_acc) >= val_accuracy(by_loss)


def test_unknown_best_epoch_rule_is_a_config_error():
    x, y = noisy_labels(60, seed=1)
    with pytest.raises(ConfigError, match="best_epoch_by: expected one of"):
        fit_classifier(wide_mlp, x, y, FIT | {"best_epoch_by": "auc"}, seed=0)


@pytest.mark.parametrize(
    ("geometry", "threshold"),
    [("calochallenge_ds1_photons", 1.0), ("calochallenge_ds1_pions", 1.0), ("calochallenge_ds2", 0.5e-3 / 0.033),
     ("calochallenge_ds3", 0.5e-3 / 0.033), ("calogan", 0.0)],
)
def test_evaluate_defaults_follow_the_challenge(geometry, threshold):
    cfg = compose_evaluate(f"geometry={geometry}")
    assert cfg.eval.voxel_threshold_mev == pytest.approx(threshold, rel=1e-6)
    mlp = cfg.eval.classifier
    assert (mlp.best_epoch_by, mlp.standardize, mlp.voxel_scale) == ("accuracy", False, 1.0)
    assert (mlp.lr, mlp.batch_size, mlp.max_epochs, mlp.early_stopping_patience) == (2e-4, 1000, 50, None)
    assert (mlp.backbone.hidden, mlp.backbone.n_hidden_layers, list(mlp.split)) == (2048, 3, [0.6, 0.2, 0.2])
    assert compose_evaluate("eval.voxel_threshold_mev=0.3").eval.voxel_threshold_mev == 0.3


def sub_threshold_noise(showers: CaloShowers, seed: int) -> CaloShowers:
    """The same showers plus 0.3-0.9 MeV in half of the empty voxels: deposits a 1 MeV readout never sees."""
    rng = np.random.default_rng(seed)
    s = showers.showers.copy()
    empty = (s == 0) & (rng.random(s.shape) < 0.5)
    s[empty] = rng.uniform(0.3, 0.9, int(empty.sum()))
    return CaloShowers(showers.incident_energy, s)


def test_deposits_below_the_readout_threshold_cannot_separate_the_samples():
    g = load_geometry(config_dir() / "geometry" / "calochallenge_ds1_photons.yaml")
    ref = quick_sample("calochallenge_ds1_photons", "photon", n=800, seed=31)
    gen = sub_threshold_noise(quick_sample("calochallenge_ds1_photons", "photon", n=800, seed=32), seed=0)
    cfg = compose_evaluate()
    eval_cfg = {"histograms": dict(cfg.eval.histograms)}
    blind = evaluate_showers(ref, gen, g, eval_cfg | {"voxel_threshold_mev": cfg.eval.voxel_threshold_mev}, ())
    seeing = evaluate_showers(ref, gen, g, eval_cfg | {"voxel_threshold_mev": 0.0}, ())
    sparsity = [k for k in blind.histograms if k.startswith("sparsity")]
    assert max(seeing.separation_powers[k] for k in sparsity) > 0.3
    assert max(blind.separation_powers[k] for k in sparsity) < 0.05
    assert gen.showers[(gen.showers > 0) & (gen.showers < 1.0)].size > 0  # the caller's showers are left as they were
