"""Multi-device training: `trainer=ddp` with two CPU processes (gloo) against a single-process run."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy

from prod_support import cli_env, compose_train, mlflow_runs, tiny_overrides, tiny_shower_file, train_cli

DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.deterministic=true"]


@pytest.fixture(scope="module")
def showers(tmp_path_factory) -> Path:
    return tiny_shower_file(tmp_path_factory.mktemp("ddp_data"), n=384)


def test_ddp_config_builds_a_two_process_gloo_trainer(tmp_path, showers):
    cfg = compose_train(tiny_overrides(tmp_path, showers) + DDP_CPU)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.num_devices == 2 and trainer.world_size == 2
    assert trainer.strategy._get_process_group_backend() == "gloo"


@pytest.mark.slow
def test_ddp_two_cpu_processes_log_once_and_match_single_process_scale(tmp_path, showers):
    single_uri, ddp_uri = f"sqlite:///{tmp_path / 'single.db'}", f"sqlite:///{tmp_path / 'ddp.db'}"
    runs = {
        "single": train_cli(tiny_overrides(tmp_path, showers, single_uri, tmp_path / "single") + ["trainer.max_epochs=3"],
                            cwd=tmp_path),
        "ddp": train_cli(tiny_overrides(tmp_path, showers, ddp_uri, tmp_path / "ddp") + ["trainer.max_epochs=3", *DDP_CPU],
                         cwd=tmp_path, env=cli_env(MASTER_PORT="29533")),
    }
    for name, proc in runs.items():
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}:\n{out[-4000:]}"
    (ddp_run,) = mlflow_runs(ddp_uri)  # rank 1 opened no run of its own
    (single_run,) = mlflow_runs(single_uri)
    assert ddp_run.info.status == "FINISHED"
    assert ddp_run.data.params["trainer/devices"] == "2"
    # checkpoints written once, by rank 0, in the run folder
    ckpts = sorted(p.name for p in (tmp_path / "ddp").rglob("*.ckpt"))
    assert ckpts.count("last.ckpt") == 1 and len(ckpts) == 2, ckpts
    # two processes see half the batches each: same loss scale as one process (within a factor 1.5)
    ratio = ddp_run.data.metrics["val/loss"] / single_run.data.metrics["val/loss"]
    assert 1 / 1.5 < ratio < 1.5, ratio
