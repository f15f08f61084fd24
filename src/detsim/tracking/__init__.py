"""MLflow: run logging (`runs`) and the local tracking server (`server`).

Only the CLIs, the pipelines and callbacks import this package (checked by the import contracts).
"""

from detsim.tracking.runs import (
    TrackingServerError,
    check_tracking_server,
    default_artifact_location,
    default_tracking_uri,
    flatten_config,
    log_artifact,
    log_figure,
    log_text,
    make_mlflow_logger,
    mark_run_failed,
    parent_run_tags,
    prepare_sqlite_store,
    resolve_tracking_uri,
)

__all__ = [
    "TrackingServerError",
    "check_tracking_server",
    "default_artifact_location",
    "default_tracking_uri",
    "flatten_config",
    "log_artifact",
    "log_figure",
    "log_text",
    "make_mlflow_logger",
    "mark_run_failed",
    "parent_run_tags",
    "prepare_sqlite_store",
    "resolve_tracking_uri",
]
