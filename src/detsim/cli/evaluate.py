"""`detsim-evaluate reference=showers.h5 generated=generated.h5 out_dir=eval/ [geometry=...]`.

Reads both files (any supported format), runs `detsim.eval.suite.evaluate_showers`, writes
out_dir/metrics.json and plots, logs them to one MLflow run (tagged with the generating run's id
when the generated file names it) and prints a short table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from detsim.cli.app import hydra_app
from detsim.eval.report import log_to_mlflow, print_summary, write_metrics, write_plots
from detsim.eval.suite import evaluate_showers
from detsim.geometry import load_geometry
from detsim.io import file_format, iter_showers, read_showers
from detsim.io.hdf5 import open_hdf5
from detsim.io.writer import atomic_output, check_output_file
from detsim.tracking import (check_tracking_server, default_artifact_location, flatten_config, parent_run_tags,
                             resolve_tracking_uri)

GENERATING_RUN_ATTR = "mlflow_run_id"
LINKED_ATTRS = ("model_uri", "registered_model", "registered_model_version", "model_git_commit", "seed")


def generation_attrs(path: str | Path) -> dict[str, str]:
    """The provenance attributes detsim-generate stored in an HDF5 file (none for other formats)."""
    if file_format(path) != "hdf5":
        return {}
    with open_hdf5(path) as handle:
        attrs = dict(handle.attrs)
    return {str(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in attrs.items()}


def generating_run_id(path: str | Path) -> str | None:
    """The MLflow run id a generator stored in the HDF5 file's attributes, if any."""
    return generation_attrs(path).get(GENERATING_RUN_ATTR)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    console = Console(stderr=True)
    out_dir = Path(cfg.out_dir)
    check_output_file(out_dir / "metrics.json")  # an unwritable out_dir fails now, not after the evaluation
    if cfg.log_mlflow:
        check_tracking_server(resolve_tracking_uri(cfg.get("tracking_uri")), float(cfg.get("connect_timeout_s", 5.0)))
    geometry = load_geometry(OmegaConf.to_container(cfg.geometry, resolve=True))
    stop = cfg.get("max_showers")
    read = dict(n_voxels=geometry.n_voxels, chunk_size=int(cfg.chunk_size), stop=stop)
    for path in (cfg.reference, cfg.generated):  # a wrong file fails here, in one line, before the long reads
        next(iter_showers(path, 1, geometry.n_voxels, stop=1), None)
    console.log(f"reading {cfg.reference} and {cfg.generated} ({geometry.describe()})")
    reference = read_showers(cfg.reference, **read)
    generated = read_showers(cfg.generated, **read)
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    result = evaluate_showers(
        reference, generated, geometry, eval_cfg, tuple(cfg.classifiers), int(cfg.seed), console=console
    )
    metrics = result.metrics()
    write_metrics(metrics, out_dir / "metrics.json")
    if cfg.plots.enabled:
        console.log("plots")
        write_plots(result, out_dir, tuple(cfg.labels), int(cfg.plots.dpi))
    with atomic_output(out_dir / "config.yaml") as partial:
        partial.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.log_mlflow:
        tags = {"detsim.task": "evaluate", "geometry": geometry.name} | parent_run_tags()
        attrs = generation_attrs(cfg.generated)
        parent = attrs.get(GENERATING_RUN_ATTR)
        if parent:  # the training run of the model that made the file: the evaluation goes beside it
            tags["generating_run_id"] = parent
            tags["detsim.training_run_id"] = parent
        tags.update({f"detsim.generated.{key}": attrs[key] for key in LINKED_ATTRS if key in attrs})
        uri = resolve_tracking_uri(cfg.get("tracking_uri"))
        run_id = log_to_mlflow(
            metrics, out_dir, uri, str(cfg.experiment_name), params=flatten_config(cfg), tags=tags,
            run_name=cfg.get("run_name"), link_run_id=parent,
            artifact_location=default_artifact_location(uri, str(cfg.experiment_name)),
        )
        console.log(f"MLflow run {run_id}")
    print_summary(metrics)
    return metrics


@hydra_app("evaluate")
def main(cfg: DictConfig) -> dict[str, Any]:
    return evaluate(cfg)


if __name__ == "__main__":
    main()
