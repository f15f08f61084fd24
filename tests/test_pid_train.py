"""Particle ID through the shared train app: simulated photon and pion files, a real MLflow sqlite store,
real Lightning training; the datamodule's balance/splits and the CaloGAN experiment on CaloGAN-layout files."""

from __future__ import annotations

from pathlib import Path

import h5py
import mlflow
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from detsim.cli.train import train
from detsim.data.pid_datamodule import ParticleIdDataModule
from detsim.errors import ConfigError
from detsim.eval.features import low_level_inputs
from detsim.metrics.roc import roc_auc
from detsim.io import read_showers, write_showers
from detsim.models.pid import LowLevelInputs, ParticleIdClassifier
from detsim.paths import config_dir
from detsim.safe_model import load_logged_model
from detsim.sim import quick_sample

GEOMETRY = "calochallenge_ds1_pions"
N = 300  # showers per particle


@pytest.fixture(scope="module")
def pid_files(tmp_path_factory) -> dict[str, Path]:
    """Photons and pions at the same incident energies (4-64 GeV) on one geometry."""
    tmp = tmp_path_factory.mktemp("pid")
    energies = 2.0 ** np.random.default_rng(5).uniform(12, 16, N)
    files = {"photon": tmp / "photons.h5", "pion": tmp / "pions.h5"}
    for seed, (particle, path) in enumerate(files.items(), start=11):
        write_showers(path, quick_sample(GEOMETRY, particle, seed=seed, energies=energies))
    return files


def compose_train(overrides: list[str]):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="module")
def trained(pid_files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pid_train")
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = compose_train([
        "experiment=pid_photon_pion", f"data.files.photon={pid_files['photon']}", f"data.files.pion={pid_files['pion']}",
        "data.batch_size=60", "model.backbone.channels=[4,8]", "model.backbone.head=[32]", "model.lr=3e-3",
        "trainer.max_epochs=4", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
        "callbacks.progress_bar=null", f"logger.tracking_uri={uri}",
        f"paths.output_dir={tmp}/out",
    ])
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(client.get_experiment_by_name("detsim").experiment_id)
    return {"run": run, "client": client, "out": tmp / "out", "uri": uri}


def test_training_logs_pid_metrics_and_roc_plot(trained):
    run, client = trained["run"], trained["client"]
    metrics = run.data.metrics
    assert {"train/loss", "val/loss", "val/auc", "test/auc", "test/background_rejection_at_90"} <= set(metrics)
    # photon (compact, early EM shower) vs pion (deep, wide, patchy) at the same energies separates easily
    assert metrics["test/auc"] > 0.8 and metrics["val/auc"] > 0.8
    assert metrics["test/background_rejection_at_90"] > 5.0
    n_background_test = int(0.2 * N)  # splits are per class
    expected = 1 / max(metrics["test/background_efficiency_at_90"], 1 / n_background_test)  # bounded by the test set
    assert metrics["test/background_rejection_at_90"] == pytest.approx(expected, rel=1e-4)
    assert run.data.params["model/_target_"] == "detsim.models.pid.ParticleIdClassifier"
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/roc.png" in plots
    assert "checkpoints" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_logged_model_and_checkpoint_classify_raw_file_rows(trained, pid_files):
    """The MLflow model (`mlflow_model()`, logged by the app) and the restored best checkpoint agree:
    raw MeV rows [E_inc, voxels] in, signal probability out, photons scored above pions."""
    mlflow.set_tracking_uri(trained["uri"])
    logged = load_logged_model(f"runs:/{trained['run'].info.run_id}/model", trained["uri"])[0]  # no pickle
    ckpt = next((trained["out"] / "checkpoints").glob("epoch*.ckpt"))
    module, example = ParticleIdClassifier.load_from_checkpoint(ckpt, weights_only=True).mlflow_model()
    rows = {p: read_showers(f) for p, f in pid_files.items()}
    raw = np.concatenate([np.c_[s.incident_energy, s.showers] for s in rows.values()]).astype(np.float32)
    with torch.no_grad():
        assert module.eval()(torch.as_tensor(example)).shape == (len(example),)
        probs = module(torch.as_tensor(raw)).numpy()
        np.testing.assert_allclose(logged.eval()(torch.as_tensor(raw)).numpy(), probs, rtol=1e-5, atol=1e-6)
    assert ((probs > 0) & (probs < 1)).all()
    assert roc_auc(np.r_[np.ones(N), np.zeros(N)], probs) > 0.8  # file order: photons, then pions
    # the torch preprocessing is the evaluation's low-level input definition
    pions = rows["pion"][:5]
    torch_rows = LowLevelInputs(100.0)(torch.as_tensor(np.c_[pions.incident_energy, pions.showers])).numpy()
    np.testing.assert_allclose(torch_rows, low_level_inputs(pions, 100.0), rtol=1e-5, atol=1e-6)


def test_datamodule_balances_and_splits_disjointly(pid_files, tmp_path):
    extra = tmp_path / "more_pions.h5"
    write_showers(extra, quick_sample(GEOMETRY, "pion", n=50, seed=3, energies=np.full(50, 2.0**14)))
    files = {**pid_files, "pion2": extra}

    def build(seed: int) -> ParticleIdDataModule:
        dm = ParticleIdDataModule(files, "photon", n_voxels=533, max_showers=200, seed=seed, batch_size=64)
        dm.setup()
        return dm

    dm = build(0)
    # signal 200 photons; background 2 files: the smaller one (50) limits the class to 100 = 50 + 50
    assert dm.counts == {"photon": 100, "pion": 50, "pion2": 50}
    labels = {k: d.label.numpy() for k, d in dm.datasets.items()}
    assert all(lab.mean() == pytest.approx(0.5, abs=0.02) for lab in labels.values())
    assert sum(len(lab) for lab in labels.values()) == 200
    keys = {k: {tuple(r) for r in np.c_[d.incident_energy, d.showers[:, :40]].tolist()} for k, d in dm.datasets.items()}
    assert not (keys["train"] & keys["val"]) and not (keys["train"] & keys["test"]) and not (keys["val"] & keys["test"])
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"incident_energy", "showers", "label"} and batch["showers"].shape == (64, 533)
    again, other = build(0), build(1)
    assert torch.equal(again.datasets["test"].showers, dm.datasets["test"].showers)
    assert not torch.equal(other.datasets["test"].showers, dm.datasets["test"].showers)
    assert dm.labels == ("photon", "pion+pion2")
    with pytest.raises(ConfigError, match="signal"):
        ParticleIdDataModule(pid_files, "electron", n_voxels=533)


def test_calogan_experiment_reads_calogan_layout_files(tmp_path):
    """The electron-vs-pion experiment composes, reads CaloGAN-layout files and runs one training step."""
    from test_shower_cnn import write_calogan

    from detsim.geometry import load_geometry

    g = load_geometry(config_dir() / "geometry" / "calogan.yaml")
    files = {"electron": tmp_path / "eplus.h5", "pion": tmp_path / "piplus.h5"}
    for seed, (particle, path) in enumerate(files.items()):
        write_calogan(path, quick_sample("calogan", particle, n=40, seed=seed), g)
    with h5py.File(files["pion"]) as f:
        assert "layer_0" in f and "showers" not in f
    cfg = compose_train(["experiment=pid_electron_pion_calogan", f"data.files.electron={files['electron']}",
                         f"data.files.pion={files['pion']}", "data.batch_size=16"])
    dm, model = instantiate(cfg.data), instantiate(cfg.model, _convert_="all")
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["showers"].shape == (16, 504)
    loss = model.loss_fn(model(batch["incident_energy"], batch["showers"]), batch["label"])
    loss.backward()
    assert torch.isfinite(loss) and model.geometry.name == "calogan"
