"""The default VAE end to end through the shared train app: real showers, real MLflow sqlite store."""

from __future__ import annotations

import mlflow
import torch
import pytest
from hydra import compose, initialize_config_dir

from conftest import write_photon_sample
from detsim.cli.train import train
from detsim.io import write_showers
from detsim.paths import config_dir


@pytest.fixture(scope="session")
def ds1_file(tmp_path_factory):
    return write_photon_sample(tmp_path_factory, n=640, seed=1)


@pytest.fixture(scope="session")
def trained(ds1_file, tmp_path_factory):
    """Two short epochs of `experiment=calo_vae_ds1_photons` with validation plots after epoch 2 and at the end."""
    tmp = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{tmp}/mlflow.db"
    overrides = [
        "experiment=calo_vae_ds1_photons", f"data.path={ds1_file}", "data.batch_size=64",
        "trainer.max_epochs=2", "+trainer.limit_train_batches=3", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
        "callbacks.validation_plots.every_n_epochs=2", "callbacks.validation_plots.max_showers=128",
        "callbacks.validation_plots.n_single=1", "callbacks.validation_plots.dpi=40", "callbacks.progress_bar=null",
        f"logger.tracking_uri={uri}", f"paths.output_dir={tmp}/out",
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    val_loss = train(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(client.get_experiment_by_name("detsim").experiment_id)
    return {"cfg": cfg, "uri": uri, "run": run, "client": client, "val_loss": val_loss, "out": tmp / "out"}


def test_training_logs_params_every_loss_term_and_artifacts(trained):
    run, client = trained["run"], trained["client"]
    assert trained["val_loss"] is not None and trained["val_loss"] > 0
    assert run.data.params["model/_target_"] == "detsim.models.vae.CaloVAE"
    assert float(run.data.params["measured/readout_threshold_mev"]) >= 0.02  # measured: >= the detector's
    terms = ["loss", "reco", "kl", "etot", "layer", "hit", "hit_energy", "layer_0", "layer_1", "layer_2",
             "layer_3", "layer_12"]
    for stage in ("train", "val"):
        missing = {f"{stage}/{t}" for t in terms} - set(run.data.metrics)
        assert not missing, missing
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "validation_plots"} <= artifacts
    plots = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, "validation_plots/final")}
    assert {"etot_einc.png", "e_layer_2.png", "profiles.png", "shower_images.png"} <= plots
    epochs = {a.path for a in client.list_artifacts(run.info.run_id, "validation_plots")}
    assert "validation_plots/epoch002" in epochs


def test_checkpoint_remembers_the_mlflow_run(trained):
    import torch

    ckpt = next((trained["out"] / "checkpoints").glob("last*.ckpt"))
    assert torch.load(ckpt, weights_only=False)["mlflow_run_id"] == trained["run"].info.run_id


def test_generate_from_the_mlflow_run_id(trained, tmp_path):
    """`detsim-generate ckpt=<run id>` loads the logged model; the file names the run and reads back."""
    import h5py

    from detsim.cli.generate import generate
    from detsim.io import read_showers

    run_id = trained["run"].info.run_id
    out = tmp_path / "gen.h5"
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("generate", overrides=[f"ckpt={run_id}", "n=300", "seed=1", f"out={out}",
                                              "energies=[1024,65536]", f"tracking_uri={trained['uri']}",
                                              "progress=false"])
    generate(cfg)
    showers = read_showers(out, n_voxels=368)
    assert len(showers) == 300 and showers.showers.min() >= 0
    with h5py.File(out) as handle:
        assert handle.attrs["mlflow_run_id"] == run_id


@pytest.mark.parametrize("experiment", ["calo_vae_ds2", "calo_vae_root"])
def test_other_experiments_compose_into_a_model_and_data(experiment, ds1_file, tmp_path):
    """ds2: the model builds for 6480 voxels with the Si-W threshold; root: the datamodule reads a ROOT file."""
    from hydra.utils import instantiate

    from detsim.io import read_showers

    path = ds1_file
    if experiment == "calo_vae_root":
        path = tmp_path / "showers.root"
        write_showers(path, read_showers(ds1_file))
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"data.path={path}", "data.batch_size=32"])
    model = instantiate(cfg.model)
    assert model.geometry.n_voxels == (6480 if experiment == "calo_vae_ds2" else 368)
    assert model.unmeasured and cfg.model.readout_threshold_mev is None  # measured on the training split
    if experiment == "calo_vae_root":
        data = instantiate(cfg.data)
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        terms, _, _ = model.loss_terms(batch["incident_energy"], batch["showers"])
        assert torch.isfinite(terms["loss"])
