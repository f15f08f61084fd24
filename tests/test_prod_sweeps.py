"""Multirun: submitit launchers (real local processes, SLURM script rendering) and the Optuna sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from detsim.paths import config_dir
from prod_support import mlflow_runs, tiny_overrides, tiny_shower_file, train_cli


@pytest.fixture(scope="module")
def showers(tmp_path_factory) -> Path:
    return tiny_shower_file(tmp_path_factory.mktemp("sweep_data"))


def multirun(tmp_path: Path, showers: Path, extra: list[str], timeout_s: int = 600) -> str:
    args = ["-m", *tiny_overrides(tmp_path, showers), "trainer.max_epochs=1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra]
    proc = train_cli(args, cwd=tmp_path)
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_as_a_real_process(tmp_path, showers):
    multirun(tmp_path, showers, ["hydra/launcher=local", "seed=1,2"])
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for job in ("0", "1"):  # checkpoints in each job's own sweep sub-folder
        assert (tmp_path / "sweep" / job / "checkpoints" / "last.ckpt").is_file()
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two submitit jobs, each with its own process log
    results = list((tmp_path / "sweep" / ".submitit").rglob("*_result.pkl"))
    assert len(results) == 2


def test_slurm_launcher_renders_an_sbatch_script_with_requeue_signal():
    """Without a cluster: the composed launcher config must produce a valid submitit SLURM submission."""
    from submitit.slurm.slurm import _make_sbatch_string

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["max_num_timeout"] > 0  # requeue on timeout/preemption
    script = _make_sbatch_string(
        command="python -m submitit.core._submit /tmp/x", folder="/tmp/x", job_name="detsim",
        partition=launcher["partition"], time=launcher["timeout_min"], nodes=launcher["nodes"],
        ntasks_per_node=launcher["tasks_per_node"], cpus_per_task=launcher["cpus_per_task"],
        gpus_per_node=launcher["gpus_per_node"], mem=f"{launcher['mem_gb']}GB",
        signal_delay_s=launcher["signal_delay_s"],
    )
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --signal=USR2@120",
                 "#SBATCH --time=240"):
        assert line in script, script


def test_optuna_sweep_two_trials_are_child_runs_of_one_sweep_run(tmp_path, showers):
    multirun(tmp_path, showers, ["hparams_search=calo_vae_optuna", "hydra.sweeper.n_trials=2"])
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = [r for r in runs if "detsim.sweep" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3
    assert {c.info.run_name for c in children} == {"trial_000", "trial_001"}
    assert children[0].data.params["model/latent_dim"] in {"4", "8", "10", "16"}  # drawn from the search space
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    val_losses = [c.data.metrics["val/loss"] for c in children]
    assert results.best_value == pytest.approx(min(val_losses), rel=1e-6)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_value"] == pytest.approx(min(val_losses))
