"""Evaluations started together on a fresh store all log: the second to create the experiment joins it."""

from __future__ import annotations

import mlflow

from detsim.eval.report import log_to_mlflow


def test_an_experiment_created_by_a_parallel_evaluation_is_joined(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("detsim-evaluate", artifact_location=str(tmp_path / "artifacts"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    real = mlflow.get_experiment_by_name
    calls = []

    def racing(name):  # the first look happens before the other evaluation's create_experiment lands
        calls.append(name)
        return None if len(calls) == 1 else real(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", racing)
    run_id = log_to_mlflow({"auc": 0.6}, tmp_path / "out", uri, "detsim-evaluate", run_name="eval")
    run = mlflow.get_run(run_id)
    assert run.data.metrics["auc"] == 0.6
    assert run.info.experiment_id == real("detsim-evaluate").experiment_id and len(calls) == 2
