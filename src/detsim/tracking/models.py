"""The inference model a training run leaves in MLflow: the network a user runs, not the training module.

`logger.model_format: safe` (default) writes detsim's pickle-free format (`detsim.safe_model`: safetensors
weights + YAML config, MLflow flavours `detsim` and `python_function`), which `detsim-generate` loads; it needs
a model class rebuildable from its hyper-parameters (the allow-list in `detsim.security`). `pickle` / `pt2` log
MLflow's PyTorch flavour instead, which detsim refuses to load.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import lightning.pytorch as L
import mlflow
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.models import Model, infer_signature

from detsim import safe_model
from detsim.security import allowed_name

log = logging.getLogger(__name__)


def log_inference_model(trainer: L.Trainer, model: L.LightningModule, logger: MLFlowLogger | None,
                        logger_cfg: Mapping[str, Any], register: str | None = None) -> str | None:
    """Log `model.mlflow_model()` as an MLflow model named `model` in the logger's run (global rank 0 only);
    register it as `register` if given. Returns the logged model's URI (None when nothing was logged)."""
    if trainer.global_rank != 0 or logger is None or not hasattr(model, "mlflow_model"):
        return None
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
    mlflow.set_tracking_uri(logger.experiment.tracking_uri)  # the store the logger writes to
    # nested when a caller's run is active (pipelines/g2net.py trains inside its parent run)
    with mlflow.start_run(run_id=logger.run_id, nested=mlflow.active_run() is not None):
        if model_format == "safe":
            info = Model.log(None, flavor=safe_model, name="model", model=model.cpu().eval(), signature=signature,
                             input_example=example, registered_model_name=register)
        else:  # mlflow imports its PyTorch flavour (and pytorch_lightning with it) on first use: only here
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
