"""What an evaluation leaves behind: metrics.json, plots, one MLflow run, a short table on the terminal."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table

from detsim.metrics import plots
from detsim.eval.physics import flat_physics_metrics
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
    """Numeric metrics as MLflow wants them; the per-feature dict becomes `separation_power.<feature>`, the physics
    report `physics/<bin>/<check>` (detsim.eval.physics.flat_physics_metrics)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "physics":
            flat.update(flat_physics_metrics(value))
        elif isinstance(value, Mapping):
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
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = _experiment_of_run(link_run_id)
    if experiment_id is None:
        if mlflow.get_experiment_by_name(experiment_name) is None:
            try:
                mlflow.create_experiment(experiment_name, artifact_location=artifact_location)
            except MlflowException as exc:  # parallel evaluations: another one created it first
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


# physics table rows: (label, checks whose verdicts one cell joins; the first present one's numbers are shown)
PHYSICS_ROWS = (
    ("response mean", ("response_mean",)),
    ("response median", ("response_median",)),
    ("rms", ("rms_ratio",)),
    ("central width", ("width_ratio",)),
    ("hit fraction", ("hit_fraction",)),
    ("outside ref. range", ("outside_fraction",)),
    ("max voxel / E_inc", ("max_voxel_ratio", "max_voxel")),
    ("longitudinal profile", ("longitudinal_profile",)),
    ("radial profile", ("radial_profile",)),
)
_RELATIVE = ("response_mean", "response_median", "hit_fraction")


def _verdict(checks: list[Mapping[str, Any]]) -> str:
    judged = [c["passed"] for c in checks if c.get("passed") is not None]
    if not judged:
        return ""
    return " [green]PASS[/]" if all(judged) else " [bold red]FAIL[/]"


def _where(name: str, at: int, section: Mapping[str, Any]) -> str:
    """A profile entry by what a physicist calls it: the layer id, or the ring's radii."""
    if name == "longitudinal_profile":
        return f"layer {section['layer_ids'][at]}"
    low, high = section["ring_edges_mm"][at]
    return f"r {low:g}-{high:g} mm"


def physics_cell(name: str, checks: list[Mapping[str, Any]], section: Mapping[str, Any]) -> str:
    """Two lines: the generated value, the score the tolerance applies to and PASS/FAIL of every check in
    `checks`; then the reference's value and bootstrap uncertainty."""
    c = checks[0]
    if c["score"] is None or not math.isfinite(c["score"]):
        return "-"
    if name in ("longitudinal_profile", "radial_profile"):
        return f"{c['score']:.1%} at {_where(name, c['at'], section)}{_verdict(checks)}\n±{c['score_unc']:.1%}"
    if name == "outside_fraction":
        return f"{c['generated']:.3%}{_verdict(checks)}\nref {c['reference']:.3%}"
    score = f"{c['score']:+.1%}" if name in _RELATIVE else f"x{c['score']:.3f}"
    return f"{c['generated']:.4g} ({score}){_verdict(checks)}\nref {c['reference']:.4g}±{c['reference_unc']:.1g}"


def physics_table(section: Mapping[str, Any]) -> Table:
    """The physics report (metrics.json's `physics`): a row per check, a column per energy bin after `all` (the
    checks over all showers). Profile cells: the largest |gen/ref - 1| of the checked entries and where it is."""
    groups = {"all": section["all"]} | {label: b["checks"] for label, b in section["bins"].items()}
    sizes = {"all": section} | dict(section["bins"])
    table = Table(title=f"physics report: {section['verdict']}", show_header=True, show_lines=True)
    table.add_column("check")
    for label in groups:
        size = sizes[label]
        table.add_column(f"{label} ({size['n_reference']}/{size['n_generated']})", justify="right")
    for text, names in PHYSICS_ROWS:
        cells = []
        for label, checks in groups.items():
            present = [n for n in names if n in checks]
            if present:
                cells.append(physics_cell(present[0], [checks[n] for n in present], section))
            else:
                cells.append("not checked" if label != "all" and not checks else "")
        table.add_row(text, *cells)
    table.caption = ("cells: generated (gen/ref - 1 or gen/ref), then reference ± its bootstrap uncertainty; profiles: "
                     "largest |gen/ref - 1|; columns: E_inc bin (reference/generated showers); tolerances: "
                     "conf/eval/physics/default.yaml")
    return table


def print_summary(metrics: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(metrics))
    if "physics" in metrics:
        console.print(physics_table(metrics["physics"]))
