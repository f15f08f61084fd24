"""`detsim-train`: instantiate data, model, callbacks, logger and trainer from the composed config and fit.

Kept thin on purpose: a new model or dataset is a new config file, not a change here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from detsim.cli.app import hydra_app
from detsim.errors import ConfigError
from detsim.tracking import flatten_config, log_artifact, log_text, make_mlflow_logger

log = logging.getLogger(__name__)


def run_output_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder when launched by Hydra, else `paths.output_dir` (tests, compose API)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every entry of `cfg.callbacks` with a `_target_`; `null` entries switch one off."""
    callbacks: list[L.Callback] = []
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        if cb_cfg is not None and "_target_" in cb_cfg:
            callbacks.append(instantiate(cb_cfg))
    return callbacks


def log_inference_model(trainer: L.Trainer, model: L.LightningModule, logger: Any) -> None:
    """Log `model.mlflow_model()` (plain module + input example) with a signature, if the model offers it."""
    if trainer.global_rank != 0 or logger is None or not hasattr(model, "mlflow_model"):
        return
    import mlflow
    import torch
    from mlflow.models import infer_signature

    module, example = model.mlflow_model()
    module = module.cpu().eval()
    with torch.no_grad():
        output = module(torch.as_tensor(example)).numpy()
    mlflow.set_tracking_uri(logger._tracking_uri)
    with mlflow.start_run(run_id=logger.run_id):
        mlflow.pytorch.log_model(
            module, name="model", signature=infer_signature(example, output), input_example=example
        )


def train(cfg: DictConfig) -> float | None:
    """Fit (and optionally test) the configured model; return `cfg.optimized_metric` for sweepers."""
    L.seed_everything(cfg.seed, workers=True)
    out_dir = run_output_dir(cfg)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = build_callbacks(cfg)
    logger = make_mlflow_logger(cfg.logger, run_name=cfg.get("run_name")) if cfg.get("logger") else None
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger or False, default_root_dir=str(out_dir)
    )
    if logger is not None and trainer.global_rank == 0:
        logger.log_hyperparams(flatten_config(cfg))
        log_text(trainer, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        log.info("MLflow run %s at %s", logger.run_id, logger._tracking_uri)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("run_test") and getattr(datamodule, "has_test", True):
        trainer.test(model, datamodule=datamodule, ckpt_path="best" if _has_best(trainer) else None)
    best = _has_best(trainer)
    if best:
        log_artifact(trainer, best, "checkpoints")
    if cfg.logger and cfg.logger.get("log_model", True):
        log_inference_model(trainer, model, logger)
    metric_name = cfg.get("optimized_metric")
    if not metric_name:
        return None
    if metric_name not in fit_metrics:
        raise ConfigError(f"optimized_metric {metric_name!r} was not logged; logged: {sorted(fit_metrics)}")
    return fit_metrics[metric_name]


def _has_best(trainer: L.Trainer) -> str | None:
    ckpt = trainer.checkpoint_callback
    path = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
    return path or None


@hydra_app("train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
