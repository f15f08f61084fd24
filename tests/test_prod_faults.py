"""Fault tolerance: NaN/Inf losses, unreachable tracking servers, preemption signals, kill -9 and resume."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
import torch

from detsim.cli.train import train
from detsim.training.faults import NonFiniteLossError
from detsim.security import load_checkpoint
from prod_support import REPO, cli_env, compose_train, mlflow_runs, tiny_overrides, tiny_shower_file, train_cli


@pytest.fixture(scope="module")
def showers(tmp_path_factory) -> Path:
    return tiny_shower_file(tmp_path_factory.mktemp("faults_data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, proc=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_infinite_loss_stops_with_step_and_term_and_fails_the_mlflow_run(tmp_path, showers):
    # An infinite KL weight leaves every loss term finite except the weighted total.
    cfg = compose_train(tiny_overrides(tmp_path, showers) + ["model.loss.w_kl=inf"])
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg)
    message = str(info.value)
    assert "step 1 " in message and "train/loss=inf" in message
    assert "train/reco=" not in message  # finite terms are not blamed
    (run,) = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FAILED"
    assert "train/loss=inf" in run.data.tags["detsim.failure"]
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()  # stopped in the first epoch


def test_unreachable_tracking_server_fails_before_training_in_one_line(tmp_path, showers):
    port = free_port()  # nothing listens there
    args = tiny_overrides(tmp_path, showers, tracking_uri=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    proc = train_cli(args, cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert proc.returncode == 2, out
    assert lines[-1].startswith("detsim error: MLflow tracking server http://127.0.0.1:") and "cannot be reached" in lines[-1]
    assert "Traceback" not in out and "Epoch" not in out
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert time.monotonic() - started < 60  # no minutes of MLflow client retries


def _slurm_env(tmp_path: Path, with_scontrol: bool) -> dict[str, str]:
    """The variables a one-task SLURM job has; optionally a recording `scontrol` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = os.environ["PATH"]
    if with_scontrol:
        shim = bin_dir / "scontrol"
        shim.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
        path = f"{bin_dir}:{path}"
    else:
        path = ":".join(p for p in path.split(":") if not (Path(p) / "scontrol").exists())
    return cli_env(
        PATH=path, SLURM_JOB_ID="4242", SLURM_JOB_NAME="detsim-train", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
        SLURM_NNODES="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost",
    )


@pytest.mark.slow
@pytest.mark.parametrize("with_scontrol", [False, True])
def test_sigusr1_checkpoints_requeues_and_stops(tmp_path, showers, with_scontrol):
    run = tmp_path / "run"
    args = tiny_overrides(tmp_path, showers) + ["trainer=slurm", "trainer.max_epochs=200"]
    proc = train_cli(args, cwd=tmp_path, env=_slurm_env(tmp_path, with_scontrol))
    try:
        wait_for(lambda: (run / "checkpoints" / "last.ckpt").exists(), 180, proc)
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    hpc = run / "hpc_ckpt_1.ckpt"
    assert hpc.is_file(), out
    checkpoint = load_checkpoint(hpc)
    assert 0 < checkpoint["global_step"] and checkpoint["epoch"] < 199  # stopped early, not at max_epochs
    if with_scontrol:
        assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
        assert "SLURM requeue requested" in out
    else:
        assert "scontrol not found, not requeued" in out
    (mlrun,) = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert mlrun.info.status == "FINISHED"


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path, showers):
    """SIGKILL in the middle of epoch 3 of 4; the same command with ckpt_path=auto finishes with identical weights."""
    common = ["trainer.max_epochs=4", "ckpt_path=auto"]
    env = cli_env(PYTHONPATH=str(REPO / "tests"))
    reference = train_cli(tiny_overrides(tmp_path, showers, out=tmp_path / "ref") + common, cwd=tmp_path, env=env)
    out_ref, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out_ref

    killed = tiny_overrides(tmp_path, showers, out=tmp_path / "killed") + common
    chaos = ["+callbacks.chaos._target_=prod_chaos.KillAtStep", "+callbacks.chaos.step=11"]
    first = train_cli(killed + chaos, cwd=tmp_path, env=env)
    out_first, _ = first.communicate(timeout=300)
    assert first.returncode == -signal.SIGKILL, out_first
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")["epoch"] == 1  # epochs 0-1 done

    second = train_cli(killed, cwd=tmp_path, env=env)
    out_second, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out_second
    ref, resumed = _final_weights(tmp_path / "ref"), _final_weights(tmp_path / "killed")
    assert ref.keys() == resumed.keys()
    for name in ref:
        assert torch.equal(ref[name], resumed[name]), name
    # the resumed attempt continued the MLflow run of the killed one
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 2
