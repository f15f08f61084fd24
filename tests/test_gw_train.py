"""A few training steps of the GW CNNs through the shared train app, tracked in a real MLflow sqlite store."""

from __future__ import annotations

import mlflow
import pytest
from hydra import compose, initialize_config_dir

from detsim.cli.train import train
from detsim.paths import config_dir
from detsim.gw.synth import synthesise


@pytest.fixture(scope="module")
def g2net_dir(tmp_path_factory):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        sim = compose("simulate", overrides=["simulator=gw"]).simulator
    return synthesise(sim, n=60, seed=4, out=tmp_path_factory.mktemp("g2net"), progress=False)


@pytest.mark.parametrize("experiment, extra", [
    ("g2net_1dcnn", []), ("g2net_cqt", []),
    ("g2net_1dcnn", ["trainer.precision=bf16-mixed", "model.test_time_augmentation=true"]),
])
def test_few_steps_log_to_mlflow(g2net_dir, tmp_path, experiment, extra):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [*extra,
        f"experiment={experiment}", f"data.path={g2net_dir}", f"data.cache_path={tmp_path}/cache.h5",
        "data.batch_size=8", "data.val_fraction=0.3", "data.test_fraction=0.3",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "trainer.accelerator=cpu",
        f"logger.tracking_uri={uri}", f"paths.output_dir={tmp_path}/out", "callbacks.progress_bar=null", "logger.log_model=false",
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    val_loss = train(cfg)
    assert val_loss is not None and val_loss > 0

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(client.get_experiment_by_name("detsim").experiment_id)
    metrics = run.data.metrics
    assert {"train/loss_epoch", "val/loss", "val/auc", "test/auc"} <= set(metrics)
    assert 0.0 <= metrics["val/auc"] <= 1.0
    assert run.data.params["model/net/_target_"].startswith("detsim.gw.cnn.")
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc.png", "plots/efficiency_vs_snr.png"} <= plots


def test_models_and_augmentations():
    import torch

    from detsim.gw.cnn import GW1DCNN, GW2DCNN, augment

    x = torch.randn(4, 3, 4096)
    for net in (GW1DCNN(), GW2DCNN(cqt={"fmin": 20.0, "fmax": 500.0, "hop_length": 64})):
        logits = net(x)
        assert logits.shape == (4,)
        logits.sum().backward()
    swapped = augment(x, swap_ligo=1.0)
    assert torch.equal(swapped[:, 0], x[:, 1]) and torch.equal(swapped[:, 2], x[:, 2])
    assert torch.equal(augment(x, sign_flip=1.0), -x)
    torch.manual_seed(0)
    rolled = augment(x, time_shift=50)
    for b in range(4):   # one common shift per sample, the same for all three detectors
        k = next(k for k in range(-50, 51) if torch.equal(x[b, 0].roll(k), rolled[b, 0]))
        assert torch.equal(x[b].roll(k, dims=-1), rolled[b])
    # H1 and L1 go through one branch: a change to its weights moves both detectors' features
    net = GW1DCNN()
    branch = sum(p.numel() for p in net.ligo.parameters())
    assert sum(p.numel() for p in net.parameters()) == branch * 2 + sum(
        p.numel() for m in (net.head, net.pool, net.classifier) for p in m.parameters())


def test_symmetric_logits_are_invariant_under_the_training_symmetries():
    """Test-time averaging over (H1<->L1 swap) x (sign flip): the score of a sample is the score of each of its views."""
    import torch

    from detsim.gw.cnn import symmetric_logits

    class Lopsided(torch.nn.Module):   # odd in h and different for H1 and L1, like a trained network can be
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return 3.0 * v[:, 0].mean(-1) + v[:, 1].pow(3).mean(-1) - v[:, 2].pow(2).mean(-1)

    torch.manual_seed(0)
    net, x = Lopsided(), torch.randn(3, 3, 2048)
    base = symmetric_logits(net, x)
    assert not torch.allclose(net(x), net(-x)) and not torch.allclose(net(x), net(x[:, [1, 0, 2]]))
    for view in (x[:, [1, 0, 2]], -x, -x[:, [1, 0, 2]]):
        torch.testing.assert_close(symmetric_logits(net, view), base)
    torch.testing.assert_close(base, -x[:, 2].pow(2).mean(-1))           # the odd parts average out


def test_layer_lists_that_do_not_match_are_a_config_error():
    """A silently ignored entry once cost this model a head layer; now it is an error naming the keys."""
    from detsim.errors import ConfigError
    from detsim.gw.cnn import GW1DCNN

    with pytest.raises(ConfigError, match="head_channels, head_kernels and head_pools"):
        GW1DCNN(head_channels=(64, 128, 128), head_kernels=(7, 7), head_pools=(2, 1))
    with pytest.raises(ConfigError, match="branch_channels"):
        GW1DCNN(branch_channels=(1, 16, 32), branch_kernels=(31,), branch_pools=(4,))


def test_baseline_scores_place_the_configured_bank_and_find_the_signals(g2net_dir, tmp_path):
    """The pipeline's matched-filter baseline: true templates, and the stochastic bank conf/gw/bank/default places
    (here a small one), as max and marginalised statistics; injected signals score above noise."""
    import numpy as np
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from detsim.gw.matched_filter import baseline_scores

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        sim = compose("simulate", overrides=["simulator=gw"]).simulator
        cfg = compose("train", overrides=["experiment=g2net_1dcnn", f"data.path={g2net_dir}",
                                          f"data.cache_path={tmp_path}/cache.h5", "data.test_fraction=0.5"])
    bank_cfg = OmegaConf.merge(OmegaConf.load(config_dir() / "gw" / "bank" / "default.yaml"),
                               {"n_candidates": 120, "minimal_match": 0.9})
    assert bank_cfg.placement == "stochastic"
    dm = instantiate(cfg.data)
    dm.setup()
    raw = dm.raw("test")
    scores = baseline_scores(raw, str(g2net_dir / sim.injections_file), dm.whitener, sim, bank_cfg, progress=False)
    (bank_key,) = [k for k in scores if k.startswith("mf_bank") and not k.endswith("_marginal")]
    assert set(scores) == {"mf_true", bank_key, f"{bank_key}_marginal"} and int(bank_key[7:]) > 10
    signal = raw["target"].astype(bool)
    assert 0 < signal.sum() < len(signal)
    for key in ("mf_true", bank_key):
        assert scores[key][signal].mean() > scores[key][~signal].mean() + 2    # SNR 4-14 against noise maxima ~5-6
    assert np.all(scores[f"{bank_key}_marginal"] <= scores[bank_key] ** 2 / 2 + 1e-2)


def test_training_inside_an_active_parent_run_logs_the_model_to_its_own_run(g2net_dir, tmp_path, monkeypatch):
    """pipelines/g2net.py trains in-process inside its parent run: the model must still land in the train run."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("detsim", artifact_location=(tmp_path / "mlartifacts").as_uri())  # not ./mlruns
    mlflow.set_experiment("detsim")
    overrides = ["experiment=g2net_1dcnn", f"data.path={g2net_dir}", f"data.cache_path={tmp_path}/cache.h5",
                 "data.batch_size=8", "data.val_fraction=0.3", "data.test_fraction=0.3", "trainer.max_epochs=1",
                 "+trainer.limit_train_batches=2", "trainer.accelerator=cpu", f"logger.tracking_uri={uri}",
                 f"paths.output_dir={tmp_path}/out", "callbacks.progress_bar=null"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with mlflow.start_run(run_name="parent") as parent:
        monkeypatch.setenv("DETSIM_PARENT_RUN_ID", parent.info.run_id)
        train(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = {r.info.run_name: r for r in client.search_runs(client.get_experiment_by_name("detsim").experiment_id)}
    child = next(r for name, r in runs.items() if name != "parent")
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    models = mlflow.search_logged_models(experiment_ids=[child.info.experiment_id], output_format="list")
    assert [m.source_run_id for m in models] == [child.info.run_id]
