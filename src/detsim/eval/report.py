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
    tracking_uri: str | None,
    experiment_name: str,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> str:
    """Open one run, log params, metrics and every file under out_dir as artifacts; return its run id."""
    import mlflow

    from detsim.tracking import default_artifact_location, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment_name) is None:
        mlflow.create_experiment(experiment_name, artifact_location=default_artifact_location(uri, experiment_name))
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name=run_name, tags=dict(tags or {})) as run:
        if params:
            mlflow.log_params(dict(params))
        mlflow.log_metrics(flat_metrics(metrics))
        mlflow.log_artifacts(str(out_dir))
        return run.info.run_id


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
