"""Provenance: a training run records its config once, data digests, commit, description, system and
per-epoch train metrics; generated files name their model; evaluations land beside the training run."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import h5py
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from detsim.cli.evaluate import evaluate
from detsim.cli.train import train
from detsim.generate import generate_to_file, incident_energies, load_generator
from detsim.paths import config_dir
from detsim.provenance import commit_of_checkout, git_commit, write_build_info
from detsim.tracking import MAX_PARAM_LENGTH, file_digest
from prod_support import PYTHON, REPO, compose_train, mlflow_runs, tiny_overrides, tiny_shower_file

LONG_NOTE = "x" * (MAX_PARAM_LENGTH + 500)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of 5 steps each with log_every_n_steps=20: shorter than the logging interval."""
    tmp = tmp_path_factory.mktemp("prov")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    data = tiny_shower_file(tmp)
    cfg = compose_train(tiny_overrides(tmp, data) + [
        "logger.log_model=true", "trainer.log_every_n_steps=20", "logger.system_metrics_interval_s=1",
        "logger.experiment_name=calo-prov", f"+note={LONG_NOTE}", "description=tiny provenance run"])
    train(cfg)
    (run,) = mlflow_runs(uri, "calo-prov")
    return tmp, uri, data, run


def test_params_are_the_config_once_without_cuts(trained):
    _, uri, _, run = trained
    params = run.data.params
    assert "data_path" not in params and "latent_dim" not in params  # Lightning's second copy is gone
    assert params["data/geometry"] == params["model/geometry"] == "${geometry}"
    assert params["geometry/name"] == "calochallenge_ds1_photons"
    assert not [k for k in params if k.startswith(("model/geometry/", "data/geometry/"))]
    assert params["model/latent_dim"] == "2"
    assert params["note"].startswith(f"<{len(LONG_NOTE)} characters") and "config.yaml" in params["note"]
    config = Path(MlflowClient(uri).download_artifacts(run.info.run_id, "config.yaml"))
    assert LONG_NOTE in config.read_text()
    assert all(len(v) <= MAX_PARAM_LENGTH for v in params.values())


def test_run_records_dataset_digest_commit_description_and_system_metrics(trained):
    _, _, data, run = trained
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == file_digest(data)
    assert str(data.resolve()) in dataset_input.dataset.source
    tags = run.data.tags
    assert tags["mlflow.note.content"] == "tiny provenance run"
    assert tags["detsim.git_commit"] == git_commit() and len(tags["mlflow.source.git.commit"]) == 40
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)


def test_train_terms_are_logged_at_every_epoch_end_of_short_epochs(trained):
    _, uri, _, run = trained
    client = MlflowClient(uri)
    for key in ("train/kl", "train/reco", "train/etot"):
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) == 2, key  # two epochs of 5 steps, each ending with its terms
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/kl")) == [4, 9]


def test_generated_file_names_its_model_and_evaluation_lands_beside_the_training_run(trained, tmp_path):
    tmp, uri, data, run = trained
    run_id = run.info.run_id
    loaded = load_generator(run_id, tracking_uri=uri)
    out = generate_to_file(loaded, incident_energies(None, reference=data), tmp_path / "gen.h5", seed=11,
                           progress=False)
    with h5py.File(out) as handle:
        attrs = dict(handle.attrs)
    assert attrs["model_uri"] == f"runs:/{run_id}/model" and attrs["mlflow_run_id"] == run_id
    assert attrs["seed"] == 11 and attrs["detsim_version"] and attrs["git_commit"] == git_commit()
    assert attrs["readout_threshold_mev"] == pytest.approx(loaded.threshold_mev)
    assert attrs["model_git_commit"] == git_commit()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"reference={data}", f"generated={out}", f"out_dir={tmp_path / 'eval'}",
                                             "classifiers=[]", "plots.enabled=false", f"tracking_uri={uri}"])
    evaluate(cfg)
    client = MlflowClient(uri)
    (evaluation,) = client.search_runs([run.info.experiment_id], "tags.`detsim.task` = 'evaluate'")
    assert evaluation.data.tags["detsim.training_run_id"] == run_id
    assert evaluation.data.tags["detsim.generated.model_uri"] == f"runs:/{run_id}/model"
    assert client.get_experiment_by_name("detsim-evaluate") is None  # not the evaluation's default experiment


def test_build_hook_records_the_commit_and_stays_silent_without_git(tmp_path):
    built = tmp_path / "pkg"
    built.mkdir()
    written = write_build_info(REPO, built)
    assert written is not None and repr(commit_of_checkout(REPO / "src" / "detsim")) in written.read_text()
    bare = tmp_path / "no-git"
    (bare / "src" / "detsim").mkdir(parents=True)
    other = tmp_path / "pkg2"
    other.mkdir()
    assert write_build_info(bare, other) is None and not list(other.iterdir())


@pytest.mark.slow
def test_a_built_wheel_carries_the_commit(tmp_path):
    """Built from a clone in tmp_path (a build writes build/ and *.egg-info beside the sources)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone)], check=True, timeout=300)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    done = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                           str(clone)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("detsim-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = archive.read("detsim/_build_info.py").decode()
    assert f"GIT_COMMIT = {head!r}" in info
