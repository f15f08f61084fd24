"""`detsim-train`: instantiate data, model, callbacks, logger and trainer from the composed config and fit.

Kept thin on purpose: a new model or dataset is a new config file, not a change here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from detsim.cli.console import output_is_terminal
from detsim.training.progress import EpochLines
from detsim.cli.app import hydra_app
from detsim.errors import ConfigError, DetsimError
from detsim.io.checkpoint import AtomicCheckpointIO
from detsim.security import checked_output_dir, load_checkpoint
from detsim.learn.artifacts import log_artifact, log_text
from detsim.tracking import (data_files, flatten_config, make_mlflow_logger, mark_run_failed, start_system_metrics,
                             stop_system_metrics)

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id"          # beside the checkpoints: a resumed job continues the same MLflow run
LIGHTNING_CKPT_KEYS = ("last", "hpc", "best")


def run_output_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder when launched by Hydra, else `paths.output_dir` (tests, compose API); resolved and checked.

    Under Hydra `paths.output_dir` is pointed at the same folder, so checkpoints of a multirun job live in its
    (stable) sweep sub-folder, where a requeued job finds them again.
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        out = Path(cfg.paths.output_dir)
    out = checked_output_dir(out, "run folder")
    if cfg.get("paths") is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
    return out


def newest_checkpoint(cfg: DictConfig, out_dir: Path) -> Path | None:
    """The newest intact checkpoint of the run folder: `hpc_ckpt_*.ckpt` (preemption), then every checkpoint
    the checkpoint callbacks wrote (`last*.ckpt` first among equals); a broken one is skipped with a warning."""
    candidates = list(out_dir.glob("hpc_ckpt_*.ckpt"))
    for ckpt_cfg in (cfg.get("callbacks") or {}).values():
        if ckpt_cfg is not None and ckpt_cfg.get("dirpath"):
            candidates += list(Path(str(ckpt_cfg.dirpath)).glob("*.ckpt"))
    newest_first = sorted(set(candidates), key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")),
                          reverse=True)
    for path in newest_first:
        try:
            load_checkpoint(path)
        except DetsimError as exc:
            log.warning("ckpt_path=auto: skipping broken checkpoint %s (%s)", path, exc)
            continue
        return path
    return None


def resume_checkpoint(cfg: DictConfig, out_dir: Path) -> str | None:
    """`ckpt_path` as Lightning takes it; `auto` picks the newest checkpoint of this run folder (or none).

    A checkpoint file is first loaded safely (weights only), so a pickle that would run code is rejected with
    a one-line error before Lightning touches it.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and str(ckpt) == "auto":
        found = newest_checkpoint(cfg, out_dir)
        log.info("ckpt_path=auto: %s", found or "no checkpoint yet, starting from scratch")
        ckpt = None if found is None else str(found)
    if ckpt is None or str(ckpt) in LIGHTNING_CKPT_KEYS:
        return ckpt
    path = Path(str(ckpt)).expanduser().resolve()
    load_checkpoint(path)
    return str(path)


def previous_run_id(out_dir: Path, ckpt_path: str | None) -> str | None:
    """The MLflow run of an earlier attempt in the same folder, when this one resumes from a checkpoint."""
    marker = out_dir / RUN_ID_FILE
    resuming = ckpt_path is not None or any(out_dir.glob("hpc_ckpt_*.ckpt"))
    return marker.read_text().strip() or None if resuming and marker.is_file() else None


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every entry of `cfg.callbacks` with a `_target_`; `null` entries switch one off.

    `trainer.enable_progress_bar=false` alone switches the progress bar off: Lightning refuses a progress-bar
    callback beside it, and a user should not have to know the second key. Output that is not a terminal (batch
    logs) gets one plain line per epoch instead of a live bar (see `progress_bar_enabled`)."""
    bar = progress_bar_enabled(cfg)
    callbacks: list[L.Callback] = []
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        if cb_cfg is None or "_target_" not in cb_cfg:
            continue
        callback = instantiate(cb_cfg)
        if isinstance(callback, L.callbacks.ProgressBar) and not bar:
            continue
        callbacks.append(callback)
    if not bar and cfg.get("trainer", {}).get("enable_progress_bar", True):
        callbacks.append(EpochLines())
    return callbacks


def progress_bar_enabled(cfg: DictConfig) -> bool:
    """A live bar only when asked for and when a terminal shows it."""
    return bool(cfg.get("trainer", {}).get("enable_progress_bar", True)) and output_is_terminal()


def log_inference_model(trainer: L.Trainer, model: L.LightningModule, logger: Any, logger_cfg: Any,
                        register: str | None = None) -> str | None:
    """Log `model.mlflow_model()` as an MLflow model named `model`; register it as `register` if given.

    `logger.model_format: safe` (default) writes detsim's pickle-free format (`detsim.safe_model`:
    safetensors weights + YAML config, MLflow flavours `detsim` and `python_function`), which
    `detsim-generate` loads; it needs a model class rebuildable from its hyper-parameters (the allow-list
    in `detsim.security`). `pickle` / `pt2` log MLflow's PyTorch flavour instead, which detsim refuses to
    load. Returns the logged model's URI.
    """
    if trainer.global_rank != 0 or logger is None or not hasattr(model, "mlflow_model"):
        return None
    import mlflow
    import torch
    from mlflow.models import Model, infer_signature

    from detsim import safe_model
    from detsim.security import allowed_name

    module, example = model.mlflow_model()
    module = module.cpu().eval()
    with torch.no_grad():
        output = module(torch.as_tensor(example)).numpy()
    signature = infer_signature(example, output)
    model_format = str(logger_cfg.get("model_format", "safe"))
    if model_format == "safe" and allowed_name(type(model)) is None:
        log.warning("model class %s is not in detsim.security.ALLOWED_TARGETS: logging MLflow's pickled "
                    "PyTorch flavour, which detsim-generate will not load", type(model).__qualname__)
        model_format = "pickle"
    mlflow.set_tracking_uri(logger._tracking_uri)
    # nested when a caller's run is active (pipelines/g2net.py trains inside its parent run)
    with mlflow.start_run(run_id=logger.run_id, nested=mlflow.active_run() is not None):
        if model_format == "safe":
            info = Model.log(None, flavor=safe_model, name="model", model=model.cpu().eval(), signature=signature,
                             input_example=example, registered_model_name=register)
        else:
            info = mlflow.pytorch.log_model(
                module, name="model", signature=signature, input_example=example,
                serialization_format=model_format, registered_model_name=register,
                # naming the requirements skips MLflow's inference, a subprocess that cost ~13 s per run
                pip_requirements=safe_model.requirements(),
            )
    if register:
        log.info("registered %s version %s (pin it: MlflowClient().set_registered_model_alias(%r, 'prod', %s))",
                 register, info.registered_model_version, register, info.registered_model_version)
    return info.model_uri


def log_run_start(logger: Any, cfg: DictConfig) -> None:
    """What a fresh training run records before fitting: the config once (params and config.yaml), the
    detsim version and commit, a description, and the data files as dataset inputs with their digests."""
    from detsim.tracking import data_files, log_dataset_inputs, log_params, provenance_tags

    client, run_id = logger.experiment, logger.run_id
    log_params(client, run_id, flatten_config(cfg))
    for key, value in provenance_tags(describe_run(cfg)).items():
        client.set_tag(run_id, key, value)
    log_dataset_inputs(client, run_id, data_files(cfg.get("data")))


def describe_run(cfg: DictConfig) -> str:
    """`cfg.description`, else one generated line: model, geometry, data, epochs, seed."""
    if cfg.get("description"):
        return str(cfg.description)
    model = str((cfg.get("model") or {}).get("_target_", "model")).rsplit(".", 1)[-1]
    geometry = (cfg.get("geometry") or {}).get("name", "")
    data = ", ".join(str(p) for p in data_files(cfg.get("data")).values()) or "no data file"
    epochs = (cfg.get("trainer") or {}).get("max_epochs")
    return f"{model} {geometry} trained on {data}; max_epochs={epochs}, seed={cfg.get('seed')}"


def train(cfg: DictConfig) -> float | None:
    """Fit (and optionally test) the configured model; return `cfg.optimized_metric` for sweepers."""
    if cfg.get("register") and not (cfg.get("logger") and cfg.logger.get("log_model", True)):
        raise ConfigError(f"register={cfg.register}: registering needs a logged model (logger.log_model=true)")
    L.seed_everything(cfg.seed, workers=True)
    out_dir = run_output_dir(cfg)
    ckpt_path = resume_checkpoint(cfg, out_dir)
    logger = None
    if cfg.get("logger"):
        run_id = previous_run_id(out_dir, ckpt_path)
        logger = make_mlflow_logger(cfg.logger, run_id=run_id)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _convert_="all")  # plain hparams: checkpoints stay weights_only-loadable
    callbacks = build_callbacks(cfg)
    # every checkpoint goes through a temporary file renamed into place (a kill leaves the old or the new one)
    plugins = [*instantiate(cfg.trainer.get("plugins") or []), AtomicCheckpointIO()]
    if logger is not None and cfg.logger.get("train_metrics_every_epoch", True):
        from detsim.training.epoch_metrics import LogTrainMetricsAtEpochEnd

        callbacks.append(LogTrainMetricsAtEpochEnd())
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger or False, default_root_dir=str(out_dir), plugins=plugins,
        enable_progress_bar=progress_bar_enabled(cfg),
    )
    monitor = None
    if logger is not None and trainer.global_rank == 0:
        if logger._run_id is None:
            log_run_start(logger, cfg)
            log_text(trainer, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        (out_dir / RUN_ID_FILE).write_text(str(logger.run_id))
        log.info("MLflow run %s at %s", logger.run_id, logger._tracking_uri)
        if cfg.logger.get("system_metrics", True):
            monitor = start_system_metrics(logger, float(cfg.logger.get("system_metrics_interval_s", 10.0)))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.get("run_test") and getattr(datamodule, "has_test", True) and not trainer.interrupted:
            best_ckpt = "best" if _has_best(trainer) else None
            trainer.test(model, datamodule=datamodule, ckpt_path=best_ckpt, weights_only=True)
    except BaseException as exc:
        if trainer.global_rank == 0:
            mark_run_failed(logger, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        stop_system_metrics(monitor)
    if _preempted(trainer):
        log.warning("training stopped by a preemption signal; resume from the checkpoint in %s", out_dir)
        return None
    best = _has_best(trainer)
    if best:
        log_artifact(trainer, best, "checkpoints")
    if cfg.get("logger") and cfg.logger.get("log_model", True):
        log_inference_model(trainer, model, logger, cfg.logger, register=cfg.get("register"))
    metric_name = cfg.get("optimized_metric")
    if not metric_name:
        return None
    if metric_name not in fit_metrics:
        raise ConfigError(f"optimized_metric {metric_name!r} was not logged; logged: {sorted(fit_metrics)}")
    return fit_metrics[metric_name]


def _preempted(trainer: L.Trainer) -> bool:
    from detsim.training.faults import PreemptionStop

    return any(isinstance(cb, PreemptionStop) and cb.handled for cb in trainer.callbacks)


def _has_best(trainer: L.Trainer) -> str | None:
    ckpt = trainer.checkpoint_callback
    path = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
    return path or None


@hydra_app("train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
