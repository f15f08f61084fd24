"""Hyper-parameter search: an Optuna study driven through Hydra's multirun, each trial a child MLflow run.

Why our own sweeper: hydra-optuna-sweeper pins optuna<3, which no longer installs beside current numpy and
SQLAlchemy. This one uses current Optuna's ask/tell API and launches trials through whatever Hydra launcher
is configured (basic, submitit_local, slurm), so a sweep runs locally or as SLURM jobs unchanged.
The search space is written in Hydra's override grammar (`choice(...)`, `range(...)`, `interval(...)`,
`tag(log, interval(...))`) and parsed by Hydra's own parser: nothing is evaluated.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from detsim.errors import ConfigError

log = logging.getLogger(__name__)

PARENT_ENV = "DETSIM_PARENT_RUN_ID"   # read by detsim.tracking.make_mlflow_logger: trials become child runs


def parse_search_space(params: Mapping[str, str], arguments: Sequence[str] = ()) -> tuple[dict[str, Override], list[str]]:
    """Search dimensions (from `params` and from sweep overrides on the command line) and the fixed overrides."""
    parser = OverridesParser.create()
    space: dict[str, Override] = {}
    for key, value in (params or {}).items():
        space[key] = parser.parse_override(f"{key}={value}")
    fixed: list[str] = []
    for override in parser.parse_overrides(list(arguments)):
        if override.is_sweep_override():
            space[override.get_key_element()] = override
        else:
            fixed.append(override.input_line)
    for key, override in space.items():
        if not isinstance(override.value(), (ChoiceSweep, RangeSweep, IntervalSweep)):
            raise ConfigError(f"hydra.sweeper.params.{key}: expected choice(...), range(...) or interval(...), "
                              f"found {override.input_line!r}")
    return space, fixed


def suggest(trial: Any, name: str, override: Override) -> Any:
    """Draw one value of a Hydra sweep expression from an Optuna trial."""
    sweep = override.value()
    log_scale = "log" in sweep.tags
    if isinstance(sweep, ChoiceSweep):
        return trial.suggest_categorical(name, list(sweep.list))
    if isinstance(sweep, RangeSweep):
        values = list(sweep.range())
        if all(isinstance(v, int) for v in values) and len(values) > 1:
            return trial.suggest_int(name, values[0], values[-1], step=values[1] - values[0], log=log_scale)
        return trial.suggest_categorical(name, values)
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return trial.suggest_int(name, sweep.start, sweep.end, log=log_scale)
        return trial.suggest_float(name, float(sweep.start), float(sweep.end), log=log_scale)
    raise ConfigError(f"{name}: unsupported sweep {override.input_line!r}")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return str(value)


class DetsimOptunaSweeper(Sweeper):
    """Optuna TPE (seeded) over a Hydra search space; `n_jobs` trials per launcher batch."""

    def __init__(self, params: Mapping[str, str] | None = None, n_trials: int = 20, n_jobs: int = 1,
                 direction: str = "minimize", seed: int = 1, study_name: str = "detsim", storage: str | None = None,
                 metric_name: str = "val/loss") -> None:
        self.params = dict(params or {})
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.direction, self.seed, self.study_name, self.storage = direction, int(seed), study_name, storage
        self.metric_name = metric_name
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.config_loader = hydra_context.config_loader
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        space, fixed = parse_search_space(self.params, arguments)
        if not space:
            raise ConfigError("hydra.sweeper.params is empty: nothing to search")
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, load_if_exists=self.storage is not None,
            direction=self.direction, sampler=optuna.samplers.TPESampler(seed=self.seed),
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        parent = _ParentRun(self.config, self.study_name)
        os.environ[PARENT_ENV] = parent.run_id or ""
        try:
            for batch_start in range(0, self.n_trials, self.n_jobs):
                trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - batch_start))]
                batch = []
                for trial in trials:
                    chosen = [f"{key}={_format(suggest(trial, key, ov))}" for key, ov in space.items()]
                    batch.append(tuple([*fixed, *chosen, f"logger.run_name=trial_{trial.number:03d}"]))
                self.validate_batch_is_legal(batch)
                returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
                self.job_idx += len(returns)
                for trial, ret in zip(trials, returns):
                    try:
                        value = float(ret.return_value)
                    except Exception as exc:  # a failed trial is recorded, the study goes on
                        log.warning("trial %d failed: %s", trial.number, exc)
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                        continue
                    if not math.isfinite(value):
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                        continue
                    study.tell(trial, value)
                    parent.log_trial(trial.number, value)
            completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if not completed:
                raise ConfigError(f"all {len(study.trials)} trials failed; see {sweep_dir}")
            best = study.best_trial
            results = {"name": "detsim_optuna", "metric": self.metric_name, "best_value": best.value,
                       "best_trial": best.number, "best_params": dict(best.params), "n_trials": len(study.trials)}
            OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
            parent.finish(results, sweep_dir / "optimization_results.yaml")
            log.info("best %s = %.6g in trial %d: %s", self.metric_name, best.value, best.number, best.params)
            return results
        except BaseException:
            parent.fail()
            raise
        finally:
            os.environ.pop(PARENT_ENV, None)


class _ParentRun:
    """The sweep's own MLflow run: trial values as a metric, the best parameters at the end."""

    def __init__(self, config: DictConfig, study_name: str) -> None:
        self.client = None
        self.run_id: str | None = None
        logger_cfg = config.get("logger")
        if not logger_cfg:
            return
        # Hydra imports every plugin module into every app it starts (its plugin scan, `hydra_plugins/`), so MLflow
        # tracking (torch, Lightning, MLflow: ~5 s of CPU) is imported here, when a sweep starts, not at the top: the
        # one deferred import that is not an optional extra (tests/test_architecture.py).
        from mlflow.tracking import MlflowClient

        from detsim.tracking import check_tracking_server, default_artifact_location, resolve_tracking_uri

        uri = resolve_tracking_uri(logger_cfg.get("tracking_uri"))
        check_tracking_server(uri)
        name = str(logger_cfg.get("experiment_name", "detsim"))
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(
            name, artifact_location=logger_cfg.get("artifact_location") or default_artifact_location(uri, name))
        run = self.client.create_run(exp_id, run_name=f"sweep_{study_name}", tags={"detsim.sweep": study_name})
        self.run_id = run.info.run_id

    def log_trial(self, number: int, value: float) -> None:
        if self.client:
            self.client.log_metric(self.run_id, "trial/value", value, step=number)

    def finish(self, results: Mapping[str, Any], path: Path) -> None:
        if not self.client:
            return
        self.client.log_metric(self.run_id, "best_value", float(results["best_value"]))
        for key, value in results["best_params"].items():
            self.client.log_param(self.run_id, f"best/{key}", value)
        self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        if self.client:
            self.client.set_terminated(self.run_id, "FAILED")
