"""`detsim-evaluate` end to end: real HDF5 files in, metrics.json, plots and a real sqlite MLflow run out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir

from detsim.cli.evaluate import evaluate
from detsim.errors import DataFileError
from detsim.io import write_showers
from detsim.paths import config_dir
from detsim.sim import quick_sample

TINY = [
    "eval.classifier.backbone.hidden=32",
    "eval.classifier.backbone.n_hidden_layers=1",
    "eval.classifier.max_epochs=2",
    "eval.classifier.num_threads=1",
    "eval.classifier.enable_progress_bar=false",
    "eval.cnn.backbone.channels=[2,4]",
    "eval.cnn.backbone.head=[8]",
    "eval.cnn.max_epochs=1",
    "eval.cnn.num_threads=1",
    "eval.cnn.enable_progress_bar=false",
    "plots.dpi=40",
]


@pytest.fixture(scope="module")
def shower_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("showers")
    ref, gen = folder / "showers.h5", folder / "generated.h5"
    write_showers(ref, quick_sample("calochallenge_ds1_photons", "photon", n=500, seed=1))
    write_showers(gen, quick_sample("calochallenge_ds1_photons", "photon", n=500, seed=2), attrs={"mlflow_run_id": "gen-run-42"})
    return ref, gen


def test_evaluate_cli_writes_metrics_plots_and_an_mlflow_run(shower_files, tmp_path):
    ref, gen = shower_files
    out, db = tmp_path / "eval", tmp_path / "mlflow.db"
    cmd = [
        sys.executable, "-m", "detsim.cli.evaluate", f"reference={ref}", f"generated={gen}", f"out_dir={out}",
        "geometry=calochallenge_ds1_photons", f"tracking_uri=sqlite:///{db}", "classifiers=[low,high,cnn]",
        f"hydra.run.dir={tmp_path / 'hydra'}", *TINY,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("auc_low", "auc_high", "auc_cnn", "jsd_low", "separation_power", "separation_power_mean"):
        assert key in metrics
    assert 0.0 <= metrics["auc_low"] <= 1.0 and "etot_einc" in metrics["separation_power"]
    assert (out / "plots" / "roc.png").stat().st_size > 0
    assert (out / "plots" / "features" / "width_x_2.png").stat().st_size > 0
    assert "separation power" in proc.stdout  # the rich summary table
    physics = metrics["physics"]  # the per-energy-bin physics report (dataset 1: bins per decade)
    assert isinstance(physics["passed"], bool) and physics["n_reference"] == 500
    assert list(physics["bins"]) == ["0.1-1GeV", "1-10GeV", "10-100GeV", "100-1000GeV", "1000-10000GeV"]
    checks = physics["bins"]["1-10GeV"]["checks"]
    assert {"response_mean", "rms_ratio", "width_ratio", "hit_fraction", "outside_fraction", "max_voxel",
            "longitudinal_profile", "radial_profile"} <= set(checks)
    assert checks["rms_ratio"]["reference_unc"] > 0 and checks["rms_ratio"]["tolerance"] == [0.85, 1.2]
    assert "physics report" in proc.stdout and "longitudinal profile" in proc.stdout
    assert "low-level: epoch 2/2" in proc.stdout + proc.stderr and "val AUC" in proc.stdout + proc.stderr  # progress

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(experiment_names=["detsim-evaluate"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["generating_run_id"] == "gen-run-42"
    assert run.data.metrics["auc_low"] == pytest.approx(metrics["auc_low"])
    assert run.data.metrics["separation_power.etot_einc"] == pytest.approx(metrics["separation_power"]["etot_einc"])
    assert run.data.metrics["physics/passed"] == float(physics["passed"])
    assert run.data.metrics["physics/1-10GeV/rms_ratio"] == pytest.approx(checks["rms_ratio"]["score"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"metrics.json", "plots"} <= artifacts


def test_wrong_geometry_is_a_user_error(shower_files, tmp_path):
    ref, gen = shower_files
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"reference={ref}", f"generated={gen}", "geometry=calochallenge_ds2",
                                             f"out_dir={tmp_path}", "log_mlflow=false"])
    with pytest.raises(DataFileError, match="6480 voxels"):
        evaluate(cfg)
