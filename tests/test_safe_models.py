"""MLflow models without pickles: detsim-train logs (and registers) the generator as safetensors + YAML;
detsim-generate loads it from any run id or model URI and refuses a pickled model without running it."""

from __future__ import annotations

import pathlib
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from detsim.tracking import server as tracking_server
from detsim.cli.train import train
from detsim.errors import ConfigError
from detsim.generate import generate_to_file, incident_energies, load_generator
from detsim.io import read_showers
from detsim.provenance import detsim_version
from detsim.safe_model import UnsafeModelError
from prod_support import PYTHON, cli_env, compose_train, mlflow_runs, tiny_overrides, tiny_shower_file
from test_prod_mlflow_server import free_port

ENERGIES = [1024.0, 65536.0, 1.0e6]


def _train(tmp: Path, uri: str, name: str = "calo") -> str:
    cfg = compose_train(tiny_overrides(tmp, tiny_shower_file(tmp), tracking_uri=uri)
                        + ["logger.log_model=true", f"register={name}", "logger.system_metrics=false"])
    train(cfg)
    (run,) = mlflow_runs(uri)
    return run.info.run_id


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safe")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    return tmp, uri, _train(tmp, uri)


def _showers(source: str, uri: str, tmp: Path, seed: int = 5) -> np.ndarray:
    loaded = load_generator(source, tracking_uri=uri)
    out = generate_to_file(loaded, incident_energies(6, energies=ENERGIES), tmp / "gen.h5", seed=seed, progress=False)
    return read_showers(out).showers


class _Exploit:
    """Unpickling this runs `Path(marker).touch()`: any code could stand there."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _plant_pickled_model(uri: str, marker: Path) -> str:
    """A run whose MLflow PyTorch model (a pickle) runs code when loaded, as a planted model would."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("detsim")  # created by the training, its artifacts inside tmp_path (or the server's)
    planted = torch.nn.Linear(1, 1)
    planted.payload = _Exploit(marker)
    with mlflow.start_run() as run:
        mlflow.pytorch.log_model(planted, name="model", serialization_format="pickle", pip_requirements=["torch"])
    marker.unlink(missing_ok=True)  # logging pickled (and may have copied) the payload: start clean
    return run.info.run_id


def test_logged_model_is_weights_and_config_with_detsim_in_its_requirements(registered, tmp_path):
    _, uri, run_id = registered
    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(tmp_path), tracking_uri=uri))
    files = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"MLmodel", "config.yaml", "weights.safetensors", "requirements.txt"} <= files
    assert not [f for f in files if f.endswith((".pth", ".pt", ".pkl", ".pickle"))]
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    assert set(meta["flavors"]) == {"detsim", "python_function"}
    assert meta["flavors"]["python_function"]["loader_module"] == "detsim.safe_model"
    assert f"detsim=={detsim_version()}" in (folder / "requirements.txt").read_text().split()
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["model_class"] == "detsim.models.vae.CaloVAE" and config["hyper_parameters"]["latent_dim"] == 2
    # MLflow's own pyfunc loader goes through detsim's loader (no pickle) and generates showers
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    showers = pyfunc.predict(np.array(ENERGIES, dtype=np.float32)[:, None], params={"seed": 3})
    assert showers.shape == (3, 368) and (showers >= 0).all() and showers.sum() > 0


def test_run_id_runs_uri_registry_version_and_alias_load_the_same_generator(registered, tmp_path):
    tmp, uri, run_id = registered
    client = MlflowClient(uri)
    (version,) = client.search_model_versions("name='calo'")
    assert version.run_id == run_id and str(version.version) == "1"
    client.set_registered_model_alias("calo", "champion", "1")
    reference = _showers(run_id, uri, tmp_path)
    assert reference.sum() > 0
    for source in (f"runs:/{run_id}/model", "models:/calo/1", "models:/calo@champion"):
        np.testing.assert_array_equal(_showers(source, uri, tmp_path), reference)
    loaded = load_generator("models:/calo@champion", tracking_uri=uri)
    assert loaded.mlflow_run_id == run_id
    assert loaded.provenance["registered_model_version"] == "1"


def test_generate_refuses_a_pickled_model_in_one_line_without_running_it(registered, tmp_path):
    _, uri, _ = registered
    marker = tmp_path / "pwned"
    run_id = _plant_pickled_model(uri, marker)
    with pytest.raises(UnsafeModelError, match=r"pytorch \(a pickle\)"):
        load_generator(run_id, tracking_uri=uri)
    done = subprocess.run([PYTHON, "-m", "detsim.cli.generate", f"ckpt={run_id}", f"tracking_uri={uri}", "n=4",
                           f"out={tmp_path / 'g.h5'}", "progress=false", f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("detsim error")]
    assert f"runs:/{run_id}/model" in line and "safe format" in line and "pytorch (a pickle)" in line
    assert not marker.exists() and not (tmp_path / "g.h5").exists()
    # the control: MLflow's PyTorch loader unpickles the planted model and runs its code
    mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    assert marker.exists()


def test_register_without_a_logged_model_is_a_config_error(tmp_path):
    cfg = compose_train(tiny_overrides(tmp_path, tmp_path / "unused.h5") + ["register=calo"])
    with pytest.raises(ConfigError, match="register=calo"):
        train(cfg)


@pytest.mark.slow
def test_alias_through_a_tracking_server_and_refusal_of_a_planted_model(tmp_path):
    """The production path: a real `mlflow server`, a registered model pinned by alias, a planted run."""
    handle = tracking_server.start(tmp_path / "state", port=free_port())
    try:
        run_id = _train(tmp_path, handle.url)
        client = MlflowClient(handle.url)
        client.set_registered_model_alias("calo", "prod", "1")
        out = tmp_path / "served.h5"
        done = subprocess.run([PYTHON, "-m", "detsim.cli.generate", "ckpt=models:/calo@prod", f"tracking_uri={handle.url}",
                               "n=5", "energies=[4096,65536]", f"out={out}", "progress=false",
                               f"hydra.run.dir={tmp_path / 'hydra'}"],
                              cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert run_id in done.stdout and read_showers(out).showers.shape == (5, 368)
        marker = tmp_path / "pwned"
        planted = _plant_pickled_model(handle.url, marker)
        with pytest.raises(UnsafeModelError):
            load_generator(f"runs:/{planted}/model", tracking_uri=handle.url)
        assert not marker.exists()
    finally:
        assert tracking_server.stop(handle.state_dir)
