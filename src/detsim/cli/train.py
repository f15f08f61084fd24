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
from detsim.tracking import flatten_config, log_artifact, log_text, make_mlflow_logger, mark_run_failed

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


def log_inference_model(trainer: L.Trainer, model: L.LightningModule, logger: Any, logger_cfg: Any) -> None:
    """Log `model.mlflow_model()` (plain module + input example) with a signature, if the model offers it.

    `logger.model_format` picks MLflow's serialisation: "pickle" (default) works for generators that draw
    random numbers shaped by the batch, which torch.export ("pt2") cannot trace with a dynamic batch size.
    """
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
    # nested when a caller's run is active (pipelines/g2net.py trains inside its parent run)
    with mlflow.start_run(run_id=logger.run_id, nested=mlflow.active_run() is not None):
        mlflow.pytorch.log_model(
            module,
            name="model",
            signature=infer_signature(example, output),
            input_example=example,
            serialization_format=str(logger_cfg.get("model_format", "pickle")),
            # naming the requirements skips MLflow's inference, a subprocess that cost ~13 s per run
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
        )


def train(cfg: DictConfig) -> float | None:
    """Fit (and optionally test) the configured model; return `cfg.optimized_metric` for sweepers."""
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
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger or False, default_root_dir=str(out_dir), plugins=plugins,
        enable_progress_bar=progress_bar_enabled(cfg),
    )
    if logger is not None and trainer.global_rank == 0:
        if logger._run_id is None:
            logger.log_hyperparams(flatten_config(cfg))
            log_text(trainer, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        (out_dir / RUN_ID_FILE).write_text(str(logger.run_id))
        log.info("MLflow run %s at %s", logger.run_id, logger._tracking_uri)
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
    if _preempted(trainer):
        log.warning("training stopped by a preemption signal; resume from the checkpoint in %s", out_dir)
        return None
    best = _has_best(trainer)
    if best:
        log_artifact(trainer, best, "checkpoints")
    if cfg.get("logger") and cfg.logger.get("log_model", True):
        log_inference_model(trainer, model, logger, cfg.logger)
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
