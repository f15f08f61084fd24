"""The fast-simulation pipeline: simulate -> train the calorimeter VAE -> generate -> evaluate.

    python pipelines/fastsim.py [n_train=100000] [overrides.train='[trainer.max_epochs=50]'] ...
    python pipelines/fastsim.py simulator=geant4 geant4_data_dir=<folder of the Geant4 data sets>

One MLflow parent run holds a child run per stage; results land in `outputs/fastsim/<time>/`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import hydra
import mlflow
from omegaconf import DictConfig
from rich.table import Table


from stages import child_env, cli, console, log_child_run, run_stage  # noqa: E402

from detsim.cli.signals import stopped_by_signals  # noqa: E402
from detsim.errors import DetsimError  # noqa: E402
from detsim.eval.physics import flat_physics_metrics  # noqa: E402
from detsim.paths import config_dir  # noqa: E402
from detsim.tracking import default_artifact_location, resolve_tracking_uri  # noqa: E402


def best_checkpoint(train_dir: Path) -> Path:
    """The ModelCheckpoint's best file (not `last.ckpt`)."""
    candidates = sorted(p for p in (train_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    if not candidates:
        raise DetsimError(f"training wrote no checkpoint in {train_dir / 'checkpoints'}")
    return candidates[-1]


def simulator_overrides(cfg: DictConfig) -> list[str]:
    """detsim-simulate overrides of the chosen `simulator` (fastsim.yaml `simulators`), plus the Geant4 data folder."""
    if cfg.source not in cfg.simulators:
        raise DetsimError(f"fastsim simulator: expected one of {sorted(cfg.simulators)}, found {cfg.source!r}")
    extra = list(cfg.simulators[cfg.source].simulate)
    if cfg.source == "geant4" and cfg.get("geant4_data_dir"):
        extra.append(f"geant4.data_dir={cfg.geant4_data_dir}")
    return extra


EVALUATION_KEYS = ("auc_low", "auc_high", "separation_power_mean")
PHYSICS_KEYS = ("physics/passed", "physics/n_failed")


def evaluation_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The evaluate stage's headline numbers (its metrics.json) for the parent run and the summary table: the
    classifier AUCs, the mean separation power and the physics report's verdict, `physics/passed` (0/1) and
    `physics/n_failed`, named as the evaluate run logs them (detsim.eval.physics.flat_physics_metrics). A number
    the evaluation did not make (a classifier not run, `eval.physics.enabled=false`) is left out."""
    metrics = {key: float(result[key]) for key in EVALUATION_KEYS if result.get(key) is not None}
    if result.get("physics"):
        flat = flat_physics_metrics(result["physics"])
        metrics.update({key: flat[key] for key in PHYSICS_KEYS})
    return metrics


def run_pipeline(cfg: DictConfig) -> dict[str, float]:
    out = Path(cfg.paths.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(cfg.tracking_uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(cfg.experiment_name) is None:
        mlflow.create_experiment(cfg.experiment_name, default_artifact_location(uri, cfg.experiment_name))
    mlflow.set_experiment(cfg.experiment_name)
    files = {k: out / f"{k}.h5" for k in ("showers", "reference", "generated")}
    extra = {k: list(v) for k, v in cfg.overrides.items()}
    metrics: dict[str, float] = {}
    common = [f"geometry={cfg.geometry}"]
    simulate = simulator_overrides(cfg) + extra["simulate"]
    with mlflow.start_run(run_name="fastsim") as parent:
        env = child_env(parent.info.run_id, uri)
        keys = ("geometry", "particle", "n_train", "n_reference", "n_generate", "experiment", "seed")
        mlflow.log_params({"simulator": str(cfg.source), **{k: str(cfg[k]) for k in keys}})
        stages = list(cfg.stages)
        if "simulate" in stages:
            seconds = 0.0
            for key, n, seed in (("showers", cfg.n_train, cfg.seed), ("reference", cfg.n_reference, cfg.seed + 1000)):
                seconds += run_stage(
                    f"simulate {key}",
                    [cli("detsim-simulate"), *common, f"particle={cfg.particle}", f"n={n}", f"seed={seed}",
                     f"out={files[key]}", f"hydra.run.dir={out / 'simulate' / key}", *simulate],
                    env,
                )
            metrics["simulate_seconds"] = seconds
            log_child_run(parent.info.run_id, "simulate", {"n_train": str(cfg.n_train), "n_reference": str(cfg.n_reference)},
                          {"seconds": seconds, "showers_per_second": (cfg.n_train + cfg.n_reference) / seconds}, [])
        if "train" in stages:
            metrics["train_seconds"] = run_stage(
                "train",
                [cli("detsim-train"), f"experiment={cfg.experiment}", *common, f"data.path={files['showers']}",
                 f"seed={cfg.seed}", f"paths.output_dir={out / 'train'}", "logger.run_name=train",
                 f"logger.experiment_name={cfg.experiment_name}", *extra["train"]],
                env,
            )
        if "generate" in stages:
            ckpt = best_checkpoint(out / "train")
            seconds = run_stage(
                "generate",
                [cli("detsim-generate"), f"ckpt={ckpt}", f"n={cfg.n_generate}", f"seed={cfg.seed}",
                 f"out={files['generated']}", f"reference={files['reference']}", f"paths.output_dir={out / 'generate'}",
                 *extra["generate"]],
                env,
            )
            metrics["generate_seconds"] = seconds
            log_child_run(parent.info.run_id, "generate", {"ckpt": str(ckpt), "n": str(cfg.n_generate)},
                          {"seconds": seconds}, [])
        if "evaluate" in stages:
            metrics["evaluate_seconds"] = run_stage(
                "evaluate",
                [cli("detsim-evaluate"), *common, f"reference={files['reference']}", f"generated={files['generated']}",
                 f"out_dir={out / 'eval'}", f"hydra.run.dir={out / 'eval'}", "run_name=evaluate", f"experiment_name={cfg.experiment_name}",
                 *extra["evaluate"]],
                env,
            )
            metrics.update(evaluation_metrics(json.loads((out / "eval" / "metrics.json").read_text())))
            mlflow.log_artifact(str(out / "eval" / "metrics.json"))
        mlflow.log_metrics(metrics)
        run_id = parent.info.run_id
    report(out, uri, run_id, metrics)
    return metrics


def report(out: Path, uri: str, run_id: str, metrics: dict[str, float]) -> None:
    table = Table(title="detsim fast-simulation pipeline")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}")
    console.print(table)
    console.print(f"Results: {out}", soft_wrap=True)
    console.print(f"MLflow parent run {run_id} in {uri}", soft_wrap=True)
    console.print(f"See it: [bold]{cli('mlflow')} ui --backend-store-uri {uri}[/bold]  (then open http://127.0.0.1:5000)",
                  soft_wrap=True)


@hydra.main(config_path=str(config_dir()), config_name="fastsim", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_pipeline(cfg)
    except DetsimError as exc:
        console.print(f"detsim error: {exc}", style="red")
        sys.exit(2)


def simulator_argument(argv: list[str]) -> list[str]:
    """`simulator=<name>` (the documented switch) as `source=<name>`: a primary-config key named `simulator`
    would clash with the conf/simulator group, which Hydra resolves first and refuses."""
    return [f"source={a.split('=', 1)[1]}" if a.startswith("simulator=") else a for a in argv]


if __name__ == "__main__":
    sys.argv[1:] = simulator_argument(sys.argv[1:])
    with stopped_by_signals():  # SIGTERM/SIGINT: the running stage and its workers end too, exit 128 + signal
        main()
