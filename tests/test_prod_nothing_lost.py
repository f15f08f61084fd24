"""Nothing lost: kill -9 in the middle of a write leaves the old file or the complete new one; the server stop
never signals a process it did not start."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detsim.io import count_showers, write_showers
from detsim.tracking.server import PID_FILE, stop
from prod_support import cli_env, compose_train, tiny_overrides, tiny_shower_file

PYTHON = sys.executable


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_while_writing(cmd: list[str], folder: Path, cwd: Path) -> None:
    """Start `cmd`, wait until its partial output folder holds a finished block file, then SIGKILL it."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            partial = list(folder.glob("*.partial/block_*.h5"))
            if partial:
                break
            assert proc.poll() is None, f"ended before it was killed:\n{proc.stdout.read()[-2000:]}"
            time.sleep(0.05)
        else:
            raise AssertionError("no temporary output appeared")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _old_file(folder: Path) -> tuple[Path, str]:
    out = folder / "out.h5"
    write_showers(out, __import__("detsim.sim", fromlist=["quick_sample"]).quick_sample(
        "calochallenge_ds1_photons", "photon", n=20, seed=1))
    return out, _digest(out)


def test_kill_9_during_simulate_keeps_the_old_file_and_the_same_command_resumes(tmp_path):
    from detsim.config import compose_config
    from detsim.io import read_showers
    from detsim.sim.calo.runner import run

    out, before = _old_file(tmp_path)
    settings = ["n=30000", "seed=3", "chunk_size=1024", "progress=false"]
    cmd = [PYTHON, "-m", "detsim.cli.simulate", *settings, f"out={out}", "overwrite=true", f"hydra.run.dir={tmp_path / 'hydra'}"]
    _kill_while_writing(cmd, tmp_path, tmp_path)
    assert _digest(out) == before and count_showers(out) == 20
    partial = tmp_path / "out.partial"
    assert count_showers(str(partial / "block_*.h5")) >= 1024  # the blocks written before the kill
    done = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already written" in done.stderr and not partial.exists()
    whole = run(compose_config("simulate", [*settings, f"out={tmp_path / 'whole.h5'}"]))
    a, b = read_showers(whole), read_showers(out)
    assert len(b) == 30000 and np.array_equal(a.showers, b.showers) and np.array_equal(a.incident_energy, b.incident_energy)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    from detsim.cli.train import train

    tmp = tmp_path_factory.mktemp("nothing_lost")
    showers = tiny_shower_file(tmp)
    overrides = [o for o in tiny_overrides(tmp, showers) if not o.startswith("logger.")]
    train(compose_train([*overrides, "trainer.max_epochs=1", "~logger", "~callbacks.lr_monitor"]))
    return tmp / "run" / "checkpoints" / "last.ckpt", showers


def test_kill_9_during_generate_keeps_the_old_file_and_other_settings_must_start_over(tmp_path, checkpoint):
    ckpt, showers = checkpoint
    out, before = _old_file(tmp_path)
    cmd = [PYTHON, "-m", "detsim.cli.generate", f"ckpt={ckpt}", f"reference={showers}", "n=3000000",
           "batch_size=2000", "compile=false", "progress=false", f"out={out}", "overwrite=true",
           f"hydra.run.dir={tmp_path / 'hydra'}"]
    _kill_while_writing(cmd, tmp_path, tmp_path)
    assert _digest(out) == before and count_showers(out) == 20
    other = [*cmd[:5], "n=500", *cmd[6:]]  # other settings: the killed job's partial file is not theirs to continue
    refused = subprocess.run(other, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert refused.returncode == 2 and "out.partial" in refused.stderr and "resume=false" in refused.stderr
    assert _digest(out) == before
    done = subprocess.run([*other, "resume=false"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert count_showers(out) == 500 and not (tmp_path / "out.partial").exists()


def test_server_stop_leaves_a_process_it_did_not_start_alone(tmp_path):
    bystander = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (tmp_path / PID_FILE).write_text(f"{bystander.pid} 1\n")  # stale: same PID, another start time
        assert stop(tmp_path) is False
        (tmp_path / PID_FILE).write_text(f"{bystander.pid}\n")  # an old-format file proves nothing either
        assert stop(tmp_path) is False
        time.sleep(0.2)
        assert bystander.poll() is None, "the unrelated process was signalled"
    finally:
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()
