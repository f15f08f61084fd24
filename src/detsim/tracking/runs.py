"""MLflow tracking: where runs go, how a Hydra config becomes params, how artifacts reach the run.

MLflow 3 puts the plain-file store in maintenance mode, so the default store is a sqlite database in the
project root with artifacts in a folder beside it; a server (`http://...`) is a plain override.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Mapping

import xxhash
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Param
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, ListConfig, OmegaConf

from detsim.errors import ConfigError, DetsimError
from detsim.paths import project_root
from detsim.provenance import provenance
from detsim.files import checked_output_dir


class TrackingServerError(DetsimError):
    """The MLflow tracking server named in the config cannot be reached."""


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else `sqlite:///<project root>/mlflow.db`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """A usable URI: None -> default; a bare path -> sqlite URI (MLflow 3 refuses plain file stores)."""
    if not uri:
        return default_tracking_uri()
    if "://" in uri or uri.startswith("sqlite:") or uri.startswith("databricks"):
        return uri
    path = Path(uri).expanduser().resolve()
    if path.suffix != ".db":
        raise ConfigError(f"tracking_uri {uri!r}: give a sqlite:///path.db, http(s):// URI or a .db file path")
    return f"sqlite:///{path}"


def default_artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """For a sqlite store: `<db folder>/mlartifacts/<experiment>`; servers choose their own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(tracking_uri[len("sqlite:///") :])
    return (db_path.parent / "mlartifacts" / experiment_name).resolve().as_uri()


MAX_PARAM_LENGTH = 6000      # MLflow's limit on a param value; longer values are pointed to, never cut
LONG_VALUE_ARTIFACT = "config.yaml"
_REFERENCE = re.compile(r"^\$\{(?:oc\.select:)?([A-Za-z_][\w.]*)(?:,[^}]*)?\}$")


def _long_value(value: str) -> str:
    if len(value) <= MAX_PARAM_LENGTH:
        return value
    return f"<{len(value)} characters: see the run's artifact {LONG_VALUE_ARTIFACT}>"


def flatten_config(cfg: DictConfig | Mapping[str, Any], sep: str = "/") -> dict[str, str]:
    """Nested config -> {"model/latent_dim": "10", ...}, each setting once.

    A node that only refers to another one (`geometry: ${geometry}`, `${oc.select:seed,0}`) is logged as
    that reference instead of a second copy of its values; lists stay whole as their string form; a
    value longer than MLflow's limit is replaced by a pointer to the config artifact (never cut).
    """
    flat: dict[str, str] = {}

    def walk_plain(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk_plain(value, f"{prefix}{sep}{key}" if prefix else str(key))
        else:
            flat[prefix] = _long_value(str(node))

    def walk(node: DictConfig, prefix: str) -> None:
        if not node:
            flat[prefix] = "{}"
        for key in node.keys():
            name = f"{prefix}{sep}{key}" if prefix else str(key)
            if OmegaConf.is_missing(node, key):
                flat[name] = "???"
                continue
            if OmegaConf.is_interpolation(node, key):
                match = _REFERENCE.match(str(node._get_node(key)._value()))
                if match and OmegaConf.select(cfg, match.group(1), default=None) is not None:
                    flat[name] = "${" + match.group(1) + "}"
                    continue
            value = node[key]
            if isinstance(value, DictConfig):
                walk(value, name)
            else:
                plain = OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value
                flat[name] = _long_value(str(plain))

    if isinstance(cfg, DictConfig):
        walk(cfg, "")
    else:
        walk_plain(dict(cfg), "")
    return flat


def log_params(client: Any, run_id: str, params: Mapping[str, str], batch: int = 100) -> None:
    """Log params in batches with MLflow's client (Lightning's logger would cut values at 250 characters)."""
    items = [Param(str(k), str(v)) for k, v in params.items()]
    for start in range(0, len(items), batch):
        client.log_batch(run_id, params=items[start : start + batch], synchronous=True)


def check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when an http(s) tracking server does not answer its `/health` endpoint.

    MLflow's own client retries with back-off for minutes before it gives up, long after a batch job has
    allocated its GPUs; a sqlite store needs only a writable folder.
    """
    if uri.startswith("sqlite:///"):
        checked_output_dir(Path(uri[len("sqlite:///") :]).parent, "MLflow sqlite store")
        return
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http(s) only, checked above)
            if response.status != 200:
                raise TrackingServerError(f"MLflow tracking server {uri}: /health answered HTTP {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingServerError(
            f"MLflow tracking server {uri} cannot be reached ({reason}); start it (make mlflow-server) or"
            " set logger.tracking_uri"
        ) from None


def prepare_sqlite_store(uri: str, experiment_name: str, artifact_location: str | None = None) -> None:
    """Create the sqlite schema and the experiment under a file lock.

    Parallel jobs of a multirun (submitit, several GPUs) otherwise race on a fresh database: both run the
    schema migrations ("table _alembic_tmp_experiments already exists") or both create the experiment.
    """
    db_path = Path(uri[len("sqlite:///") :])
    with open(db_path.with_name(db_path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(uri)
        if client.get_experiment_by_name(experiment_name) is None:
            location = artifact_location or default_artifact_location(uri, experiment_name)
            client.create_experiment(experiment_name, artifact_location=location)


def parent_run_tags() -> dict[str, str]:
    """`mlflow.parentRunId` when a pipeline runs this process as one of its stages (DETSIM_PARENT_RUN_ID)."""
    parent = os.environ.get("DETSIM_PARENT_RUN_ID")
    return {"mlflow.parentRunId": parent} if parent else {}


class ConfigParamsMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger minus Lightning's own hyper-parameter logging.

    Lightning logs the model's and the datamodule's init arguments at fit start: a second copy of the
    config under other names (and stale ones), cut at 250 characters. detsim logs the composed config
    once instead (`flatten_config`, `log_params`).
    """

    def log_hyperparams(self, params: Any) -> None:
        """Lightning's automatic copy of the module's hyper-parameters is ignored: the run's params are the
        composed config (detsim.tracking.log_params). Settings a module measured itself (`measured/...`,
        e.g. the readout threshold taken from the training file) are new facts and are logged."""
        if isinstance(params, Mapping):
            measured = {k: v for k, v in params.items() if str(k).startswith("measured/")}
            if measured:
                super().log_hyperparams(measured)


def make_mlflow_logger(logger_cfg: Mapping[str, Any], run_name: str | None = None,
                       run_id: str | None = None) -> ConfigParamsMLFlowLogger:
    """Lightning's MLFlowLogger from `conf/logger/mlflow.yaml`; `run_id` continues an earlier run (resume)."""
    uri = resolve_tracking_uri(logger_cfg.get("tracking_uri"))
    check_tracking_server(uri, float(logger_cfg.get("connect_timeout_s", 5.0)))
    if uri.startswith("sqlite:///"):
        prepare_sqlite_store(uri, experiment_name=str(logger_cfg.get("experiment_name", "detsim")),
                             artifact_location=logger_cfg.get("artifact_location"))
    experiment = str(logger_cfg.get("experiment_name", "detsim"))
    artifact_location = logger_cfg.get("artifact_location") or default_artifact_location(uri, experiment)
    tags = {str(k): str(v) for k, v in dict(logger_cfg.get("tags") or {}).items()} | parent_run_tags()
    return ConfigParamsMLFlowLogger(
        experiment_name=experiment,
        tracking_uri=uri,
        run_name=run_name or logger_cfg.get("run_name"),
        tags=tags or None,
        artifact_location=artifact_location,
        log_model=False,
        run_id=run_id,
    )


def file_digest(path: str | Path) -> str:
    """xxh3-128 hex of a file's bytes (32 characters: MLflow keeps dataset digests to 36)."""
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            hasher.update(block)
    return hasher.hexdigest()


def data_files(data_cfg: Mapping[str, Any] | None) -> dict[str, Path]:
    """The files a data config reads: `path` (calorimeter showers) or `files` ({particle: path}, PID)."""
    data_cfg = data_cfg or {}
    found: dict[str, str] = {}
    if data_cfg.get("path"):
        found["train"] = str(data_cfg["path"])
    for name, path in dict(data_cfg.get("files") or {}).items():
        found[str(name)] = str(path)
    return {name: Path(path).expanduser().resolve() for name, path in found.items() if Path(path).expanduser().is_file()}


def log_dataset_inputs(client: Any, run_id: str, files: Mapping[str, Path], context: str = "training") -> None:
    """Each data file as an MLflow dataset input: its path as the source, its content digest."""
    inputs = []
    for name, path in files.items():
        with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(path.as_uri())
        dataset = MetaDataset(source, name=f"{name}:{path.name}", digest=file_digest(path))
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", context)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def provenance_tags(description: str | None = None) -> dict[str, str]:
    """detsim version and commit (also MLflow's own git tag, shown in its UI) and the run description."""
    info = provenance()
    tags = {f"detsim.{key}": value for key, value in info.items()}
    if "git_commit" in info:
        tags["mlflow.source.git.commit"] = info["git_commit"].removesuffix("-dirty")
    if description:
        tags["mlflow.note.content"] = description
    return tags


def describe_run(cfg: DictConfig) -> str:
    """`cfg.description`, else one generated line: model, geometry, data, epochs, seed."""
    if cfg.get("description"):
        return str(cfg.description)
    model = str((cfg.get("model") or {}).get("_target_", "model")).rsplit(".", 1)[-1]
    geometry = (cfg.get("geometry") or {}).get("name", "")
    data = ", ".join(str(p) for p in data_files(cfg.get("data")).values()) or "no data file"
    epochs = (cfg.get("trainer") or {}).get("max_epochs")
    return f"{model} {geometry} trained on {data}; max_epochs={epochs}, seed={cfg.get('seed')}"


def log_run_start(logger: MLFlowLogger, cfg: DictConfig) -> None:
    """What a fresh training run records before fitting: the config once (params and the resolved config.yaml), the
    detsim version and commit, a description, and the data files as dataset inputs with their digests."""
    client, run_id = logger.experiment, logger.run_id
    log_params(client, run_id, flatten_config(cfg))
    for key, value in provenance_tags(describe_run(cfg)).items():
        client.set_tag(run_id, key, value)
    log_dataset_inputs(client, run_id, data_files(cfg.get("data")))
    client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), LONG_VALUE_ARTIFACT)


def start_system_metrics(logger: MLFlowLogger, interval_s: float) -> SystemMetricsMonitor | None:
    """MLflow's system-metrics sampler (CPU, memory, disk, network, GPU) on the logger's run, if psutil (which the
    sampler needs) is installed; None otherwise. End it with `stop_system_metrics`."""
    if importlib.util.find_spec("psutil") is None:
        return None
    monitor = SystemMetricsMonitor(logger.run_id, sampling_interval=float(interval_s), resume_logging=True,
                                   tracking_uri=logger.experiment.tracking_uri)
    monitor.start()
    return monitor


def stop_system_metrics(monitor: Any) -> None:
    """Stop the sampler and log one last sample: a run shorter than the interval (or the tail of a long one,
    after Lightning has ended the run) would otherwise leave its samples unpublished."""
    if monitor is None:
        return
    monitor.finish()
    monitor.collect_metrics()
    monitor.publish_metrics(monitor.aggregate_metrics())
    monitor.mlflow_logger.flush()


def mark_run_failed(logger: Any, message: str) -> None:
    """End the logger's MLflow run as FAILED and keep the reason as a tag and the run description."""
    if logger is None or getattr(logger, "run_id", None) is None:
        return
    client = logger.experiment
    client.set_tag(logger.run_id, "detsim.failure", message[:5000])
    client.set_tag(logger.run_id, "mlflow.note.content", f"FAILED: {message}"[:5000])
    client.set_terminated(logger.run_id, "FAILED")

