"""MLflow: run logging (`runs`), the inference model a training run logs (`models`) and the local tracking server
(`server`).

Only the CLIs, the pipelines and callbacks import this package (checked by the import contracts).
"""

from detsim.tracking.runs import (
    MAX_PARAM_LENGTH,
    TrackingServerError,
    check_tracking_server,
    default_artifact_location,
    data_files,
    default_tracking_uri,
    describe_run,
    file_digest,
    flatten_config,
    log_dataset_inputs,
    log_params,
    log_run_start,
    make_mlflow_logger,
    mark_run_failed,
    parent_run_tags,
    prepare_sqlite_store,
    provenance_tags,
    resolve_tracking_uri,
    start_system_metrics,
    stop_system_metrics,
)

__all__ = [
    "MAX_PARAM_LENGTH",
    "TrackingServerError",
    "data_files",
    "file_digest",
    "log_dataset_inputs",
    "log_params",
    "log_run_start",
    "provenance_tags",
    "start_system_metrics",
    "stop_system_metrics",
    "check_tracking_server",
    "default_artifact_location",
    "default_tracking_uri",
    "describe_run",
    "flatten_config",
    "make_mlflow_logger",
    "mark_run_failed",
    "parent_run_tags",
    "prepare_sqlite_store",
    "resolve_tracking_uri",
]
