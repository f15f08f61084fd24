"""Load check: detsim apps in parallel against one tracking store, then many evaluations against one server.

    python -m studies.calo.load_check --work /tmp/load [--showers 256] [--evaluations 8]

Phase 0 (setup): simulate a reference file, train a tiny VAE that logs its model to a sqlite store.
Phase 1: simulate, train (a second run) and generate (the setup run's logged model, read from the store)
at once, all on that one sqlite store. Phase 2: a tracking server (`python -m detsim.tracking.server`) on a
free loopback port and N parallel `detsim-evaluate` runs logging to it. Every phase prints its figures:
wall time, processes that failed, MLflow runs FINISHED out of those expected, and the load average (the
figures depend on what else runs on the machine). Exits 1 if any process failed or any run is incomplete.
All apps run as the real CLIs in subprocesses, at tiny sizes (a few seconds of work each when alone).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TINY_VAE = ["task_name=load_check", "trainer=cpu", "data.batch_size=32", "model.encoder.hidden=[16,8]",
            "model.latent_dim=2", "model.prior.n_bins=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "~callbacks.progress_bar", "run_test=false"]
TINY_EVAL = ["classifiers=[low]", "eval.classifier.max_epochs=2", "eval.classifier.backbone.hidden=32",
             "eval.classifier.enable_progress_bar=false", "plots.enabled=false"]


@dataclass
class Phase:
    name: str
    wall_s: float = 0.0
    failed: list[str] = field(default_factory=list)
    runs_finished: int = 0
    runs_expected: int = 0
    load: tuple[float, float] = (0.0, 0.0)

    def line(self) -> str:
        return (f"{self.name}: wall {self.wall_s:.1f} s, failed processes {len(self.failed)}"
                f"{' (' + ', '.join(self.failed) + ')' if self.failed else ''}, MLflow runs FINISHED "
                f"{self.runs_finished}/{self.runs_expected}, load average {self.load[0]:.1f} -> {self.load[1]:.1f}"
                f" on {os.cpu_count()} CPUs")

    @property
    def ok(self) -> bool:
        return not self.failed and self.runs_finished == self.runs_expected


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _start(app: str, args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    """One detsim CLI (`python -m detsim.cli.<app>`) in the background, its output in `log`."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", f"detsim.cli.{app}", *args, "hydra/job_logging=disabled"],
                                cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT)


def _run_all(jobs: dict[str, subprocess.Popen], timeout_s: float) -> list[str]:
    """Wait for every job; the names of those that failed (or ran past the time limit, then killed)."""
    deadline = time.monotonic() + timeout_s
    failed = []
    for name, proc in jobs.items():
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if code != 0:
            failed.append(f"{name} exit {code}")
    return failed


def _finished_runs(tracking_uri: str, experiment: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)
    return [r.info.run_id for r in runs if r.info.status == "FINISHED"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(work: Path, showers: int, store: str, timeout_s: float) -> tuple[Path, str]:
    """The reference file and the run id of a tiny VAE whose model the store holds."""
    reference = work / "reference.h5"
    steps = {
        "simulate": ("simulate", [f"n={showers}", "seed=1", f"out={reference}", "progress=false"]),
        "train": ("train", [*TINY_VAE, f"data.path={reference}", f"logger.tracking_uri={store}",
                            f"paths.root_dir={work}", f"paths.output_dir={work}/setup_run"]),
    }
    for name, (app, args) in steps.items():
        failed = _run_all({name: _start(app, args, work / f"setup_{name}.log", work)}, timeout_s)
        if failed:
            raise SystemExit(f"setup {name} failed: {(work / f'setup_{name}.log').read_text()[-3000:]}")
    (run_id,) = _finished_runs(store, "detsim")
    return reference, run_id


def phase_sqlite(work: Path, showers: int, store: str, reference: Path, run_id: str, timeout_s: float) -> Phase:
    phase = Phase("simulate + train + generate on one sqlite store", runs_expected=2, load=(os.getloadavg()[0], 0))
    started = time.monotonic()
    jobs = {
        "simulate": _start("simulate", [f"n={showers}", "seed=2", f"out={work}/simulated.h5", "progress=false"],
                           work / "p1_simulate.log", work),
        "train": _start("train", [*TINY_VAE, f"data.path={reference}", f"logger.tracking_uri={store}",
                                  f"paths.root_dir={work}", f"paths.output_dir={work}/p1_run"],
                        work / "p1_train.log", work),
        "generate": _start("generate", [f"ckpt={run_id}", f"tracking_uri={store}", f"reference={reference}",
                                        f"n={showers}", f"out={work}/generated.h5", "progress=false"],
                           work / "p1_generate.log", work),
    }
    phase.failed = _run_all(jobs, timeout_s)
    phase.wall_s = time.monotonic() - started
    phase.load = (phase.load[0], os.getloadavg()[0])
    phase.runs_finished = len(_finished_runs(store, "detsim"))  # the setup run and the phase-1 training
    return phase


def phase_server(work: Path, evaluations: int, reference: Path, generated: Path, timeout_s: float) -> Phase:
    phase = Phase(f"{evaluations} evaluations on one tracking server", runs_expected=evaluations)
    state = work / "server"
    start = subprocess.run([sys.executable, "-m", "detsim.tracking.server", "start", "--dir", str(state),
                            "--port", str(_free_port())], env=_env(), capture_output=True, text=True, check=True)
    url = next(word for word in start.stdout.split() if word.startswith("http://"))
    try:
        phase.load = (os.getloadavg()[0], 0)
        started = time.monotonic()
        jobs = {f"evaluate-{i}": _start("evaluate", [f"reference={reference}", f"generated={generated}",
                                                     f"out_dir={work}/eval_{i}", f"tracking_uri={url}",
                                                     f"run_name=load-{i}", f"seed={i}", *TINY_EVAL],
                                        work / f"p2_evaluate_{i}.log", work)
                for i in range(evaluations)}
        phase.failed = _run_all(jobs, timeout_s)
        phase.wall_s = time.monotonic() - started
        phase.load = (phase.load[0], os.getloadavg()[0])
        phase.runs_finished = len(_finished_runs(url, "detsim-evaluate"))
    finally:
        subprocess.run([sys.executable, "-m", "detsim.tracking.server", "stop", "--dir", str(state)], env=_env(),
                       capture_output=True, check=False)
    return phase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for files, stores and logs")
    parser.add_argument("--showers", type=int, default=256, help="showers simulated and generated")
    parser.add_argument("--evaluations", type=int, default=8, help="parallel evaluations against the server")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds each phase may take")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'mlflow.db'}"
    started = time.monotonic()
    reference, run_id = setup(work, args.showers, store, args.timeout)
    print(f"setup (simulate, then train with a logged model): {time.monotonic() - started:.1f} s", flush=True)
    phases = [phase_sqlite(work, args.showers, store, reference, run_id, args.timeout)]
    print(phases[-1].line(), flush=True)
    phases.append(phase_server(work, args.evaluations, reference, work / "generated.h5", args.timeout))
    print(phases[-1].line(), flush=True)
    ok = all(p.ok for p in phases)
    print(f"load check {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s (logs in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
