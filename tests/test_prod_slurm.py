"""The multi-node SLURM template (pipelines/slurm/train_ddp.sbatch), dry-run on one machine.

`pipelines/slurm/dry_run.py` runs the real batch script with the variables SLURM sets and an `srun` that
starts each task as a local process with its per-task variables; the 2 "nodes" are 127.0.0.1 and 127.0.0.2
(node list `127.0.0.[1-2]`), so the MASTER_ADDR the script derives from the node list is where the ranks meet.
"""

from __future__ import annotations

import importlib.util
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy

from prod_support import REPO, cli_env, compose_train, mlflow_runs, tiny_overrides, tiny_shower_file

TEMPLATE = REPO / "pipelines" / "slurm" / "train_ddp.sbatch"
VENV = Path(sys.executable).parent.parent
CPU = ["trainer.accelerator=cpu", "trainer.sync_batchnorm=false"]  # gloo: no GPUs, no synchronised BatchNorm


def _dry_run():
    spec = importlib.util.spec_from_file_location("slurm_dry_run", REPO / "pipelines" / "slurm" / "dry_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job_id_with_free_port() -> tuple[int, int]:
    """A job id whose port under the template's rule (20000 + id % 20000) is free here."""
    for _ in range(50):
        port = random.randint(20000, 39999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return 100000 + port - 20000, port
    raise RuntimeError("no free port in 20000-39999")


def _train_args(tmp: Path, data: Path) -> list[str]:
    """The tiny CPU training, with the template's own trainer (slurm_ddp) and run folder (runs/<job id>)."""
    drop = ("trainer=", "paths.output_dir=")
    return [a for a in tiny_overrides(tmp, data) if not a.startswith(drop)] + CPU


@pytest.fixture(scope="module")
def showers(tmp_path_factory) -> Path:
    return tiny_shower_file(tmp_path_factory.mktemp("slurm_data"), n=192)


def test_template_renders_two_nodes_that_meet_at_the_first_node(tmp_path, showers, monkeypatch):
    job_id = 4242
    tasks = _dry_run().rendered_tasks(TEMPLATE, _train_args(tmp_path, showers), nodes=2, tasks_per_node=1,
                                      cpus_per_task=1, job_id=job_id, cwd=tmp_path,
                                      env=cli_env(DETSIM_VENV=str(VENV)))
    assert [t["rank"] for t in tasks] == [0, 1]
    envs = [t["env"] for t in tasks]
    assert [(e["SLURM_PROCID"], e["SLURM_LOCALID"], e["SLURM_NODEID"]) for e in envs] == [("0", "0", "0"),
                                                                                         ("1", "0", "1")]
    assert [e["SLURMD_NODENAME"] for e in envs] == ["127.0.0.1", "127.0.0.2"]
    for env in envs:  # every rank: the same rendezvous, derived by the script from the node list and the job id
        assert env["MASTER_ADDR"] == "127.0.0.1"
        assert env["MASTER_PORT"] == str(20000 + job_id % 20000)
        assert (env["SLURM_NNODES"], env["SLURM_NTASKS"], env["SLURM_NTASKS_PER_NODE"]) == ("2", "2", "1")
        assert env["SLURM_JOB_ID"] == str(job_id) and env["SLURM_JOB_NODELIST"] == "127.0.0.[1-2]"
        assert env["OMP_NUM_THREADS"] == "1"  # from --cpus-per-task
    argv = tasks[1]["argv"]
    assert argv[0] == str(VENV / "bin" / "detsim-train") and "trainer=slurm_ddp" in argv
    assert f"paths.output_dir={tmp_path}/runs/{job_id}" in argv and argv[-len(CPU):] == CPU

    # The rank-1 process's trainer, built from its environment: world of 2 over 2 nodes, rank 1 on node 1.
    for key, value in envs[1].items():
        monkeypatch.setenv(key, value)
    cfg = compose_train([a for a in argv[1:] if not a.startswith("paths.")] + [f"paths.root_dir={tmp_path}",
                                                                              f"paths.output_dir={tmp_path}/run"])
    # building a rank-1 trainer sets Lightning's process-wide rank; later tests in this process must see rank 0
    from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank
    from lightning.pytorch.utilities.rank_zero import rank_zero_only as pytorch_rank

    for holder in (fabric_rank, pytorch_rank):
        monkeypatch.setattr(holder, "rank", getattr(holder, "rank", 0))
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 1, 2)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (1, 0, 1)
    env = trainer.strategy.cluster_environment
    assert (env.main_address, env.main_port) == ("127.0.0.1", 20000 + job_id % 20000)
    assert trainer.strategy._get_process_group_backend() == "gloo"


@pytest.mark.slow
def test_two_nodes_train_once_in_one_process_group(tmp_path, showers):
    job_id, _ = _job_id_with_free_port()
    done = _dry_run().run_script(
        TEMPLATE, _train_args(tmp_path, showers), nodes=2, tasks_per_node=1, cpus_per_task=1, job_id=job_id,
        cwd=tmp_path, env=cli_env(DETSIM_VENV=str(VENV)), stdout=subprocess.PIPE)
    out = done.stdout
    assert done.returncode == 0, out[-6000:]
    # Both ranks joined one gloo group of 2, meeting at the address and port the template derived.
    assert re.search(r"^0: .*GLOBAL_RANK: 0, MEMBER: 1/2", out, re.M), out[-6000:]
    assert re.search(r"^1: .*GLOBAL_RANK: 1, MEMBER: 2/2", out, re.M), out[-6000:]
    assert "distributed_backend=gloo" in out and "Starting with 2 processes" in out
    # The run completed once: one MLflow run (rank 1 opened none), one set of checkpoints.
    (run,) = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    assert (run.data.params["trainer/num_nodes"], run.data.params["trainer/devices"]) == ("2", "1")
    run_dir = tmp_path / "runs" / str(job_id)
    ckpts = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.ckpt"))
    assert ckpts.count("checkpoints/last.ckpt") == 1 and len(ckpts) == 2, ckpts
