"""`detsim-train`: instantiate data, model, callbacks, logger and trainer from the composed config and fit.

Composition only: where a run resumes is `detsim.training.resume`, what it records in MLflow `detsim.tracking`
(`log_run_start`, `detsim.tracking.models.log_inference_model`). A new model or dataset is a config file."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from detsim.cli.app import hydra_app
from detsim.cli.console import output_is_terminal
from detsim.errors import ConfigError
from detsim.io.checkpoint import AtomicCheckpointIO
from detsim.learn.artifacts import log_artifact
from detsim.files import checked_output_dir
from detsim.tracking import (log_run_start, make_mlflow_logger, mark_run_failed, start_system_metrics,
                             stop_system_metrics)
from detsim.tracking.models import log_inference_model
from detsim.training.epoch_metrics import LogTrainMetricsAtEpochEnd
from detsim.training.faults import preempted
from detsim.training.progress import EpochLines
from detsim.training.resume import previous_run_id, remember_run_id, resume_checkpoint

log = logging.getLogger(__name__)


def run_output_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder when launched by Hydra, else `paths.output_dir` (tests, compose API); resolved and checked.
    `paths.output_dir` is pointed at it, so a multirun job's checkpoints live in its (stable) sweep sub-folder."""
    out = checked_output_dir(Path(HydraConfig.get().runtime.output_dir if HydraConfig.initialized()
                                  else cfg.paths.output_dir), "run folder")
    if cfg.get("paths") is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
    return out


def progress_bar_enabled(cfg: DictConfig) -> bool:
    """A live bar only when asked for and when a terminal shows it."""
    return bool(cfg.get("trainer", {}).get("enable_progress_bar", True)) and output_is_terminal()


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every entry of `cfg.callbacks` with a `_target_` (`null` switches one off). `trainer.enable_progress_bar=false`
    alone drops the bar callback; output that is not a terminal (batch logs) gets one plain line per epoch instead."""
    bar = progress_bar_enabled(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]
    callbacks = [c for c in callbacks if bar or not isinstance(c, L.callbacks.ProgressBar)]
    if not bar and cfg.get("trainer", {}).get("enable_progress_bar", True):
        callbacks.append(EpochLines())
    return callbacks


def train(cfg: DictConfig) -> float | None:
    """Fit (and optionally test) the configured model; return `cfg.optimized_metric` for sweepers."""
    tracked = bool(cfg.get("logger"))
    if cfg.get("register") and not (tracked and cfg.logger.get("log_model", True)):
        raise ConfigError(f"register={cfg.register}: registering needs a logged model (logger.log_model=true)")
    L.seed_everything(cfg.seed, workers=True)
    out_dir = run_output_dir(cfg)
    ckpt_path = resume_checkpoint(cfg, out_dir)
    resumed_run = previous_run_id(out_dir, ckpt_path) if tracked else None
    logger = make_mlflow_logger(cfg.logger, run_id=resumed_run) if tracked else None
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _convert_="all")  # plain hparams: checkpoints stay weights_only-loadable
    callbacks = build_callbacks(cfg)
    if tracked and cfg.logger.get("train_metrics_every_epoch", True):
        callbacks.append(LogTrainMetricsAtEpochEnd())
    # every checkpoint goes through a temporary file renamed into place (a kill leaves the old or the new one)
    plugins = [*instantiate(cfg.trainer.get("plugins") or []), AtomicCheckpointIO()]
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger or False, default_root_dir=str(out_dir), plugins=plugins,
        enable_progress_bar=progress_bar_enabled(cfg),
    )
    monitor = None
    if logger is not None and trainer.global_rank == 0:
        if resumed_run is None:
            log_run_start(logger, cfg)
        remember_run_id(out_dir, logger.run_id)
        log.info("MLflow run %s at %s", logger.run_id, logger.experiment.tracking_uri)
        if cfg.logger.get("system_metrics", True):
            monitor = start_system_metrics(logger, float(cfg.logger.get("system_metrics_interval_s", 10.0)))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        if cfg.get("run_test") and getattr(datamodule, "has_test", True) and not trainer.interrupted:
            trainer.test(model, datamodule=datamodule, ckpt_path="best" if best else None, weights_only=True)
    except BaseException as exc:
        if trainer.global_rank == 0:
            mark_run_failed(logger, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        stop_system_metrics(monitor)
    if preempted(trainer):
        log.warning("training stopped by a preemption signal; resume from the checkpoint in %s", out_dir)
        return None
    if best:
        log_artifact(trainer, best, "checkpoints")
    if tracked and cfg.logger.get("log_model", True):
        log_inference_model(trainer, model, logger, cfg.logger, register=cfg.get("register"))
    metric_name = cfg.get("optimized_metric")
    if metric_name and metric_name not in fit_metrics:
        raise ConfigError(f"optimized_metric {metric_name!r} was not logged; logged: {sorted(fit_metrics)}")
    return fit_metrics[metric_name] if metric_name else None


@hydra_app("train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
