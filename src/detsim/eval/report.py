"""What an evaluation leaves behind: metrics.json, plots, one MLflow run, a short table on the terminal."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.table import Table

from detsim.eval import plots
from detsim.eval.suite import EvaluationResult
from detsim.io.writer import atomic_output


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(metrics, indent=2, sort_keys=True, allow_nan=True))
    return path


def write_plots(result: EvaluationResult, out_dir: str | Path, labels: tuple[str, str], dpi: int = 100) -> list[Path]:
    """One histogram per feature (plots/features/<name>.png) and the ROC curves (plots/roc.png)."""
    feature_dir = Path(out_dir) / "plots" / "features"
    feature_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        plots.feature_histogram(h, feature_dir / f"{name}.png", result.specs[name].label, labels, dpi)
        for name, h in result.histograms.items()
    ]
    if result.classifiers:
        curves = {f"{kind}-level" if kind != "cnn" else "CNN": r.roc for kind, r in result.classifiers.items()}
        paths.append(plots.roc_curves(curves, Path(out_dir) / "plots" / "roc.png", f"{labels[1]} vs {labels[0]}", dpi))
    return paths


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics as MLflow wants them; the per-feature dict becomes `separation_power.<feature>`."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                flat[f"{key}.{re.sub(r'[^A-Za-z0-9_./ -]', '_', str(sub))}"] = float(v)
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            flat[key] = float(value)
    return flat


def log_to_mlflow(
    metrics: Mapping[str, Any],
    out_dir: str | Path,
    tracking_uri: str,
    experiment_name: str,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    link_run_id: str | None = None,
    artifact_location: str | None = None,
) -> str:
    """Open one run, log params, metrics and every file under out_dir as artifacts; return its run id.

    link_run_id: the training run of the generating model; when the store knows it, the evaluation goes
    into that run's experiment (beside the model it judges), else into `experiment_name` (created with
    `artifact_location` if new). `tracking_uri` is resolved by the caller (detsim.tracking).
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = _experiment_of_run(link_run_id)
    if experiment_id is None:
        if mlflow.get_experiment_by_name(experiment_name) is None:
            try:
                mlflow.create_experiment(experiment_name, artifact_location=artifact_location)
            except mlflow.exceptions.MlflowException as exc:  # parallel evaluations: another one created it first
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        experiment_id = mlflow.get_experiment_by_name(experiment_name).experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {})) as run:
        if params:
            mlflow.log_params(dict(params))
        mlflow.log_metrics(flat_metrics(metrics))
        mlflow.log_artifacts(str(out_dir))
        return run.info.run_id


def _experiment_of_run(run_id: str | None) -> str | None:
    """The experiment id of `run_id` in the current store, or None (no id, or a run of another store)."""
    if not run_id:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient().get_run(run_id).info.experiment_id
    except MlflowException:
        return None


def summary_table(metrics: Mapping[str, Any], n_worst: int = 5) -> Table:
    """Classifier AUC/JSD, the mean separation power and the features that differ most."""
    table = Table(title="detsim-evaluate", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for kind in ("low", "high", "cnn"):
        if f"auc_{kind}" in metrics:
            table.add_row(f"AUC {kind} (JSD)", f"{metrics[f'auc_{kind}']:.4f} ({metrics[f'jsd_{kind}']:.4f})")
    table.add_row("separation power, mean", f"{metrics['separation_power_mean']:.4f}")
    worst = sorted(metrics["separation_power"].items(), key=lambda kv: -kv[1])[:n_worst]
    for name, value in worst:
        table.add_row(f"  {name}", f"{value:.4f}")
    return table


def print_summary(metrics: Mapping[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(summary_table(metrics))
