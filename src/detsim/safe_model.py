"""A trained model as files that load without unpickling: safetensors weights + a YAML config.

An MLflow PyTorch model is a pickle: loading one runs whatever code the run's artifacts hold. detsim logs
its models (the generator of a CaloVAE, the particle-ID classifier) instead as MLflow models with the
`detsim` flavour (this module, `save_model`):

    model/MLmodel               flavours `detsim` and `python_function` (loader: this module)
    model/config.yaml           model class (allow-listed), its hyper-parameters, detsim version and commit
    model/weights.safetensors   the LightningModule's tensors (no code can hide in a safetensors file)
    model/requirements.txt      detsim at its version, torch, numpy, safetensors

`load_model_dir` rebuilds the LightningModule from such a folder with only YAML, safetensors and detsim's
own allow-listed classes (`detsim.security.ALLOWED_TARGETS`) and returns its inference module (what
`mlflow_model()` gives: for a CaloVAE the plain generator); `detsim-generate` refuses anything else.
"""

from __future__ import annotations

import importlib
import json
import platform
import tempfile
from pathlib import Path
from typing import Any, Mapping

import mlflow
import mlflow.pyfunc
import numpy as np
import safetensors
import torch
import yaml
from mlflow.models import Model
from mlflow.models.utils import _save_example
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from detsim.errors import DataFileError
from detsim.provenance import detsim_version, provenance
from detsim.security import allowed_name, check_targets

FLAVOR = "detsim"
FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.safetensors"
MLMODEL_FILE = "MLmodel"
SAFE_EXPECTED = "a model in detsim's safe format (MLmodel flavour 'detsim': safetensors weights + YAML config)"


class UnsafeModelError(DataFileError):
    """A logged model exists but is not in a format that loads without unpickling."""


def _class_path(obj: Any) -> str:
    """The public, allow-listed name of the model's class (else its module path, which the check refuses)."""
    return allowed_name(type(obj)) or f"{type(obj).__module__}.{type(obj).__qualname__}"


def _plain(value: Any) -> Any:
    """Hyper-parameters as YAML-safe builtins (tuples -> lists, numpy scalars -> numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def requirements() -> list[str]:
    """What a host needs to load the model: detsim itself at this version first."""
    return [f"detsim=={detsim_version()}", f"torch=={torch.__version__.split('+')[0]}",
            f"numpy=={np.__version__}", f"safetensors=={safetensors.__version__}", "pyyaml"]


def save_model_dir(model: Any, folder: str | Path) -> Path:
    """Write `config.yaml` and `weights.safetensors` of an allow-listed LightningModule into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT_VERSION, "model_class": _class_path(model),
              "hyper_parameters": _plain(dict(model.hparams)), **provenance()}
    check_targets({"_target_": config["model_class"], **config["hyper_parameters"]}, folder / CONFIG_FILE)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": str(FORMAT_VERSION)})
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """The YAML config of a safe model folder, with its model class and hyper-parameters checked."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise UnsafeModelError(Path(folder), CONFIG_FILE, SAFE_EXPECTED, "no config.yaml")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataFileError(path, None, "a YAML model config", f"invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(config, Mapping) or not isinstance(config.get("hyper_parameters"), Mapping):
        raise DataFileError(path, "hyper_parameters", "a mapping of hyper-parameters", type(config).__name__)
    if config.get("format") != FORMAT_VERSION:
        raise DataFileError(path, "format", f"format {FORMAT_VERSION}", repr(config.get("format")))
    check_targets({"_target_": str(config.get("model_class")), **config["hyper_parameters"]}, path)
    return dict(config)


def load_model_dir(folder: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the inference module of a safe model folder (no pickle anywhere); return it and its config."""
    folder = Path(folder)
    config = read_config(folder)
    module_name, _, class_name = str(config["model_class"]).rpartition(".")
    model_class = getattr(importlib.import_module(module_name), class_name)  # allow-listed by read_config
    model = model_class(**config["hyper_parameters"])
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise DataFileError(folder / WEIGHTS_FILE, None, "a safetensors file of model weights", str(exc)) from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataFileError(folder / WEIGHTS_FILE, None, f"the weights of {config['model_class']}", first) from exc
    module, _ = model.mlflow_model()
    return module.to(device).eval(), config


def load_logged_model(uri: str, tracking_uri: str, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """Any MLflow model URI (`runs:/`, `models:/name/version`, `models:/name@alias`, ...): download its files
    (nothing deserialised), refuse a non-safe format, rebuild; return (module, config.yaml, MLmodel)."""
    mlflow.set_tracking_uri(tracking_uri)  # `runs:/` finds a run's logged models through the global store
    with tempfile.TemporaryDirectory(prefix="detsim-model-") as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri)
        except Exception as exc:  # mlflow raises many types for a bad URI; all are the user's to fix
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise DataFileError(uri, "model", "an MLflow model logged by detsim-train", f"{type(exc).__name__}: {first}") from exc
        meta = check_safe_mlmodel(folder, uri)
        module, config = load_model_dir(folder, device)
    return module, config, meta


def read_mlmodel(folder: str | Path) -> dict[str, Any]:
    """The MLmodel YAML of a downloaded MLflow model folder (safe_load: plain data only)."""
    path = Path(folder) / MLMODEL_FILE
    if not path.is_file():
        raise DataFileError(Path(folder), MLMODEL_FILE, "an MLflow model folder", "no MLmodel file")
    meta = yaml.safe_load(path.read_text())
    return meta if isinstance(meta, dict) else {}


def check_safe_mlmodel(folder: str | Path, uri: str) -> dict[str, Any]:
    """Refuse, in one line, an MLflow model that has no `detsim` flavour (e.g. a pickled pytorch model)."""
    meta = read_mlmodel(folder)
    flavors = dict(meta.get("flavors") or {})
    if FLAVOR not in flavors:
        found = ", ".join(f"{name} (a pickle)" if name == "pytorch" else name for name in flavors) or "no flavours"
        raise UnsafeModelError(uri, "MLmodel flavors", SAFE_EXPECTED + "; pickled models are not loaded",
                               f"flavours {found}")
    return meta


# --- MLflow flavour -------------------------------------------------------------------------------------------
def save_model(path: str | Path, mlflow_model: Any = None, model: Any = None, signature: Any = None,
               input_example: Any = None, **_: Any) -> None:
    """MLflow's flavour hook (`mlflow.models.Model.log(flavor=detsim.safe_model, model=...)`)."""
    path = Path(path)
    save_model_dir(model, path)
    (path / "requirements.txt").write_text("\n".join(requirements()) + "\n")
    (path / "python_env.yaml").write_text(yaml.safe_dump(
        {"python": platform.python_version(), "build_dependencies": ["pip"], "dependencies": ["-r requirements.txt"]}))
    mlflow_model = mlflow_model or Model()
    if signature is not None:
        mlflow_model.signature = signature
    if input_example is not None:
        _save_example(mlflow_model, input_example, str(path))
    mlflow_model.add_flavor(FLAVOR, format=FORMAT_VERSION, config=CONFIG_FILE, weights=WEIGHTS_FILE,
                            detsim_version=detsim_version())
    mlflow.pyfunc.add_to_model(mlflow_model, loader_module=__name__, python_env="python_env.yaml")
    mlflow_model.save(str(path / MLMODEL_FILE))


class PyfuncModel:
    """`mlflow.pyfunc` face of a detsim model. A generator takes incident energies (MeV, one column) and
    returns showers (MeV), `params={"seed": n}` fixing the random stream (default 1) as `detsim-generate
    seed=` does; a classifier takes its raw rows."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> np.ndarray:
        x = torch.as_tensor(np.asarray(getattr(model_input, "values", model_input), dtype=np.float32))
        with torch.inference_mode():
            if hasattr(self.module, "n_voxels"):
                rng = torch.Generator().manual_seed(int((params or {}).get("seed", 1)))
                return self.module(x.reshape(-1), rng).float().numpy()
            return self.module(x).float().numpy()


def _load_pyfunc(path: str) -> PyfuncModel:
    """MLflow's pyfunc loader hook: `path` is the model folder."""
    return PyfuncModel(load_model_dir(path)[0])
