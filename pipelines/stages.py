"""Run detsim CLI stages as child processes under one MLflow parent run.

Each stage is the real console script (its own Hydra app and process), so a pipeline run is exactly what
a user would type; the parent run id travels in DETSIM_PARENT_RUN_ID, which detsim's loggers turn into
the `mlflow.parentRunId` tag.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from rich.console import Console

from detsim.cli.console import tidy_console
from detsim.errors import DetsimError

tidy_console()  # before the Console exists: it reads the width once
console = Console()


def cli(name: str) -> str:
    """Path of a detsim console script in the running interpreter's environment."""
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else name


def run_stage(name: str, argv: list[str], env: dict[str, str]) -> float:
    """Run one stage, streaming its output; return its wall time. A failing stage stops the pipeline."""
    console.rule(f"[bold]{name}")
    console.print(" ".join(argv), style="dim", soft_wrap=True)  # a command must copy whole
    start = time.perf_counter()
    result = subprocess.run(argv, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise DetsimError(f"stage {name!r} failed with exit status {result.returncode}: {' '.join(argv)}")
    return seconds


def child_env(parent_run_id: str, tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DETSIM_PARENT_RUN_ID"] = parent_run_id
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def log_child_run(parent_run_id: str, name: str, params: dict[str, str], metrics: dict[str, float], artifacts: list[Path]) -> str:
    """A child run for stages that do not open one themselves (simulation, generation)."""
    with mlflow.start_run(run_name=name, nested=True, tags={"mlflow.parentRunId": parent_run_id}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in artifacts:
            if path.exists():
                mlflow.log_artifact(str(path))
        return run.info.run_id
