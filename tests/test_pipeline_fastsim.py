"""The fast-simulation pipeline end to end: every stage is the real CLI, all under one MLflow parent run."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import REPO


@pytest.fixture
def fastsim(monkeypatch):
    """pipelines/fastsim.py as a module: it runs as a script, so its sibling `stages` imports from its folder."""
    monkeypatch.syspath_prepend(str(REPO / "pipelines"))
    return importlib.import_module("fastsim")


def test_the_parent_run_and_the_summary_get_the_evaluations_headline_and_physics_verdict(fastsim, tmp_path, capsys):
    """From the evaluate stage's metrics.json: the AUCs it made and the physics verdict, not the per-bin checks."""
    check = {"reference": 0.1, "generated": 0.3, "reference_unc": 0.01, "score": 3.0, "score_unc": 0.1,
             "tolerance": [0.8, 1.25], "at": None, "passed": False}
    physics = {"passed": False, "verdict": "FAIL (2 of 9 checks: 1-3GeV/rms_ratio, all/outside_fraction)",
               "failures": ["all/outside_fraction", "1-3GeV/rms_ratio"], "all": {"outside_fraction": check},
               "bins": {"1-3GeV": {"passed": False, "checks": {"rms_ratio": check}}}}
    result = {"auc_low": 0.61, "auc_high": None, "separation_power_mean": 0.02, "jsd_low": 0.1, "physics": physics}
    metrics = fastsim.evaluation_metrics(result)
    assert metrics == {"auc_low": 0.61, "separation_power_mean": 0.02, "physics/passed": 0.0, "physics/n_failed": 2.0}
    passing = physics | {"passed": True, "failures": [], "all": {}, "bins": {}}
    assert fastsim.evaluation_metrics({"physics": passing}) == {"physics/passed": 1.0, "physics/n_failed": 0.0}
    assert fastsim.evaluation_metrics({"auc_low": 0.5}) == {"auc_low": 0.5}  # eval.physics.enabled=false

    fastsim.report(tmp_path, "sqlite:///mlflow.db", "0123abcd", {"train_seconds": 12.5} | metrics)
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in capsys.readouterr().out.splitlines() if line.count("│") == 3}
    assert rows["physics/passed"] == "0" and rows["physics/n_failed"] == "2" and rows["auc_low"] == "0.61"


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
    for key in ("simulate_seconds", "train_seconds", "generate_seconds", "auc_low", "separation_power_mean",
                "physics/passed", "physics/n_failed"):
        assert key in parent.data.metrics
    assert parent.data.metrics["physics/passed"] == float(metrics["physics"]["passed"])
    assert parent.data.metrics["physics/n_failed"] == len(metrics["physics"]["failures"])
