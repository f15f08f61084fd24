"""Shared pieces of the production tests: a tiny simulator file, tiny-VAE overrides, config composition.

Every production test trains the real CaloVAE on showers from the real reference simulator, only small:
two hidden layers of 16/8 units, 2 latent dimensions, 192 showers, a few batches of 32.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
N_SHOWERS = 192


def tiny_shower_file(folder: Path, n: int = N_SHOWERS, seed: int = 3) -> Path:
    """Real reference-simulator photon showers (dataset-1 geometry) in the CaloChallenge HDF5 layout."""
    from detsim.io import write_showers
    from detsim.sim import quick_sample

    path = folder / "showers.h5"
    if not path.exists():
        write_showers(path, quick_sample("calochallenge_ds1_photons", "photon", n=n, seed=seed))
    return path


def tiny_overrides(tmp: Path, data: Path, tracking_uri: str | None = None, out: Path | None = None) -> list[str]:
    """Overrides that make the default CaloVAE (dataset-1 photons) train in seconds on CPU, deterministically."""
    uri = tracking_uri or f"sqlite:///{tmp / 'mlflow.db'}"
    return [
        "task_name=calo_vae_tiny",
        "trainer=cpu",
        f"data.path={data}",
        "data.batch_size=32",
        "model.encoder.hidden=[16,8]",
        "model.latent_dim=2",
        "model.prior.n_bins=2",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "logger.log_model=false",
        "run_test=false",
        f"logger.tracking_uri={uri}",
        f"paths.output_dir={out or tmp / 'run'}",
        f"paths.root_dir={tmp}",
    ]


def compose_train(overrides: list[str]) -> DictConfig:
    """The `detsim-train` config as the CLI would compose it (without the `hydra` node)."""
    from hydra import compose, initialize_config_dir

    from detsim.paths import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `detsim-train` subprocess: no inherited tracking URI, quiet, single-threaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_", "DETSIM_PARENT"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def train_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """Start `detsim-train` (the real console entry point) as a subprocess."""
    cmd = [PYTHON, "-m", "detsim.cli.train", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def mlflow_runs(tracking_uri: str, experiment: str = "detsim"):
    """All runs of an experiment as MLflow Run objects."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=100)


class PickleExploit:
    """Unpickling this runs `Path(marker).touch()`: any code could stand there (the planted-checkpoint tests)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
