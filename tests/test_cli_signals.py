"""SIGTERM and SIGINT end a CLI and its worker processes and keep its resumable state (detsim.cli.signals).

The real case is `detsim-simulate simulator=geant4 n_workers=2`, whose spawned Geant4 workers used to outlive a
`kill <pid>` of the app: the app is stopped after its first blocks, must exit with 128 + the signal, leave no
worker alive (checked by pid) and keep `<out>.partial/`, and the same command then resumes to the file an
uninterrupted run writes. The handler alone is also checked with a fork pool and a plain child process.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from prod_support import cli_env

SIGNALS = [signal.SIGTERM, signal.SIGINT]
needs_geant4 = pytest.mark.skipif(importlib.util.find_spec("geant4_pybind") is None, reason="pip install 'detsim[geant4]'")


def _simulate(g4_data: Path, out: Path) -> list[str]:
    """A Geant4 run of a few seconds with two workers: 60 blocks of 4 electrons of 300-600 MeV."""
    return [sys.executable, "-m", "detsim.cli.simulate", "simulator=geant4", "geometry=calochallenge_ds2",
            "particle=electron", "n=240", "seed=5", "n_workers=2", "simulator.block_size=4", "spectrum=uniform_1_100gev",
            "spectrum.min_MeV=300", "spectrum.max_MeV=600", f"geant4.data_dir={g4_data}", f"out={out}",
            f"hydra.run.dir={out.parent / 'hydra'}", "progress=false"]


def _alive(processes: list[psutil.Process]) -> list[int]:
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _workers(pid: int) -> list[psutil.Process]:
    """The app's worker processes (multiprocessing's resource tracker aside: it leaves with its parent)."""
    return [p for p in psutil.Process(pid).children(recursive=True)
            if not any("resource_tracker" in part for part in p.cmdline())]


def _stop_when(proc: subprocess.Popen, ready, signum: int, timeout_s: float = 120.0) -> list[psutil.Process]:
    """Wait until `ready()`, note the app's workers, send `signum` and wait for the app to end."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"ended before it could be stopped:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)
    workers = _workers(proc.pid)
    proc.send_signal(signum)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return workers


@pytest.fixture(scope="module")
def uninterrupted(g4_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "g4.h5"
    done = subprocess.run(_simulate(g4_data, out), capture_output=True, text=True, env=cli_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@needs_geant4
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_a_signalled_geant4_run_ends_its_workers_and_resumes(g4_data: Path, uninterrupted: Path, tmp_path: Path,
                                                             signum: signal.Signals) -> None:
    from detsim.io import read_showers

    out = tmp_path / "g4.h5"
    partial = tmp_path / "g4.partial"
    command = _simulate(g4_data, out)
    proc = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = _stop_when(proc, lambda: len(list(partial.glob("block_*.h5"))) >= 1, signum)
    log = proc.stdout.read()
    assert len(workers) == 2, [w.cmdline() for w in workers]
    assert proc.returncode == 128 + signum, log[-3000:]
    assert not _alive(workers), f"workers outlived the app: {_alive(workers)}"
    assert f"stopped by {signum.name}" in log and "rerun the same command to resume" in log
    kept = sorted(p.name for p in partial.iterdir())
    assert not out.exists() and "fingerprint.json" in kept and 1 <= sum(n.startswith("block_") for n in kept) < 60

    again = subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "showers already written" in again.stderr and not partial.exists()
    got, want = read_showers(out), read_showers(uninterrupted)
    assert np.array_equal(got.incident_energy, want.incident_energy) and np.array_equal(got.showers, want.showers)


HANDLED_APP = textwrap.dedent("""
    import multiprocessing as mp, subprocess, sys, time
    from detsim.cli.signals import stopped_by_signals

    def work(_):
        time.sleep(120)

    if __name__ == "__main__":
        with stopped_by_signals():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])   # left to the handler's sweep
            with mp.get_context("fork").Pool(2) as pool:                                # forked: inherits the handler
                result = pool.map_async(work, range(2))
                print("ready", flush=True)
                result.get()
""")


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_the_handler_ends_forked_workers_and_plain_children(tmp_path: Path, signum: signal.Signals) -> None:
    script = tmp_path / "app.py"
    script.write_text(HANDLED_APP)
    proc = subprocess.Popen([sys.executable, str(script)], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline().strip() == "ready"
    workers = _stop_when(proc, lambda: len(_workers(proc.pid)) >= 3, signum, timeout_s=60)
    log = proc.stdout.read()
    assert len(workers) == 3 and proc.returncode == 128 + signum, log
    assert not _alive(workers), f"children outlived the app: {_alive(workers)}"
    assert f"stopped by {signum.name}" in log and "Traceback" not in log, log


def test_the_handler_is_installed_only_while_the_app_runs() -> None:
    """In-process apps (tests, notebooks) get their own handlers back, whatever way the app ends."""
    from detsim.cli.signals import stopped_by_signals

    before = {s: signal.getsignal(s) for s in SIGNALS}
    with stopped_by_signals():
        assert all(signal.getsignal(s) is not before[s] for s in SIGNALS)
    with pytest.raises(ValueError, match="an ordinary error"):
        with stopped_by_signals():
            raise ValueError("an ordinary error passes through unchanged")
    assert {s: signal.getsignal(s) for s in SIGNALS} == before
