"""The fast-simulation pipeline end to end: every stage is the real CLI, all under one MLflow parent run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import REPO


@pytest.mark.slow
def test_pipeline_runs_every_stage_as_a_child_of_one_parent_run(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    out = tmp_path / "run"
    cmd = [
        sys.executable, str(REPO / "pipelines" / "fastsim.py"),
        "n_train=1500", "n_reference=800", "n_generate=800",
        f"tracking_uri=sqlite:///{db}", f"paths.output_dir={out}",
        'overrides.train=["trainer.max_epochs=1","callbacks.validation_plots=null","logger.log_model=false"]',
        'overrides.evaluate=["eval/classifier=mlp_fast","eval.classifier.max_epochs=1","plots.enabled=false"]',
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["auc_low"] <= 1.0 and "separation_power_mean" in metrics

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(experiment_names=["detsim-fastsim"], output_format="list")
    parents = [r for r in runs if r.info.run_name == "fastsim"]
    assert len(parents) == 1
    parent = parents[0]
    children = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert children == {"simulate", "train", "generate", "evaluate"}
    for key in ("simulate_seconds", "train_seconds", "generate_seconds", "auc_low", "separation_power_mean"):
        assert key in parent.data.metrics
