"""Files for the run of a Trainer's logger: plots and texts a model or callback writes while training.

Through Lightning's own `MLFlowLogger` (its public `experiment`, MLflow's client, and `run_id`), so library
code needs no tracking import and no MLflow store of its own: the app that built the Trainer chose where the
run goes. Only global rank 0 logs; with no MLflow logger nothing is logged and the functions return False.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger


def mlflow_logger(trainer: Any) -> MLFlowLogger | None:
    """The Trainer's MLflow logger on global rank 0, else None (no logger, another logger, another rank)."""
    if getattr(trainer, "global_rank", 0) != 0:
        return None
    return next((logger for logger in getattr(trainer, "loggers", ()) if isinstance(logger, MLFlowLogger)), None)


def log_artifact(trainer: Any, local_path: str | Path, artifact_path: str | None = None) -> bool:
    """Log a file, or a folder's contents, under `artifact_path` of the Trainer's MLflow run."""
    logger = mlflow_logger(trainer)
    if logger is None:
        return False
    local_path = Path(local_path)
    if local_path.is_dir():
        logger.experiment.log_artifacts(logger.run_id, str(local_path), artifact_path)
    else:
        logger.experiment.log_artifact(logger.run_id, str(local_path), artifact_path)
    return True


def log_text(trainer: Any, text: str, name: str) -> bool:
    """Write `text` to a file called `name` and log it at the top of the Trainer's MLflow run."""
    if mlflow_logger(trainer) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        return log_artifact(trainer, path)
