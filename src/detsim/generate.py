"""Generate showers with a trained calorimeter VAE and write them as a shower file.

The model comes from a Lightning checkpoint path, an MLflow run id (its logged `model`), or an MLflow
model URI (`runs:/<id>/model`, `models:/<name>/<version>`, `models:/<name>@<alias>`), never unpickled. Incident energies come from a
reference shower file, an explicit list, or a spectrum config. Showers are generated in batches, batch b
drawing from its own torch.Generator (`batch_rng`, seeded by SeedSequence(seed, b): same seed -> same file), and appended
to `<out stem>.partial/`: memory stays flat, and a killed job rerun with the same command continues after
its last whole batch (`detsim.io.resume`).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import detsim
from detsim.errors import ConfigError, DataFileError
from detsim.io import read_incident_energies
from detsim.io.resume import resumable_output
from detsim.models.vae import CaloVAE
from detsim.provenance import provenance
from detsim.runtime.graph import compile_generator
from detsim.safe_model import load_logged_model, load_model_dir
from detsim.security import allowed_name, check_targets, load_checkpoint
from detsim.showers import CaloShowers
from detsim.spectra import sample_energies
from detsim.upgrade import COMMAND as UPGRADE_COMMAND, is_old

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "file:", "s3:/", "gs:/", "http://", "https://")


@dataclass
class LoadedGenerator:
    """A plain generator module (incident energies MeV -> showers MeV) and where it came from."""

    module: torch.nn.Module
    n_voxels: int
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)  # of the model: registry version, training commit

    @property
    def threshold_mev(self) -> float:
        return float(getattr(self.module, "threshold_mev", 0.0))


def load_generator(source: str | Path, tracking_uri: str | None = None, device: str = "cpu") -> LoadedGenerator:
    """Load from a `.ckpt` path, a safe model folder, a 32-hex MLflow run id, or an MLflow model URI.

    Nothing is unpickled: checkpoints are read with `weights_only=True`, MLflow models must be in detsim's
    safe format (`detsim.safe_model`), and hyper-parameters may name only allow-listed detsim classes.
    """
    text = str(source)
    path = Path(text)
    if path.is_dir():
        module, config = load_model_dir(path, device)
        loaded = LoadedGenerator(module, 0, None, str(path.resolve()), _model_provenance(config))
    elif path.suffix == ".ckpt" or path.is_file():
        loaded = _from_checkpoint(path, device)
    elif _RUN_ID.match(text) or text.startswith(_URI_SCHEMES):
        loaded = _from_mlflow(f"runs:/{text}/model" if _RUN_ID.match(text) else text, tracking_uri, device)
    else:
        raise DataFileError(text, None, "a .ckpt file, an MLflow run id or a model URI (runs:/..., models:/...)", "none of these")
    loaded.module = loaded.module.to(device).eval()
    n_voxels = getattr(loaded.module, "n_voxels", None)
    if n_voxels is None:
        raise DataFileError(text, "n_voxels", "a detsim ShowerGenerator", type(loaded.module).__name__)
    loaded.n_voxels = int(n_voxels)
    return loaded


def _from_checkpoint(path: Path, device: str) -> LoadedGenerator:
    """A Lightning checkpoint of a CaloVAE, read once with weights_only=True; hparams checked before use."""
    if not path.is_file():
        raise DataFileError(path, None, "a Lightning checkpoint of a CaloVAE", "no such file")
    checkpoint = load_checkpoint(path, map_location=device)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise DataFileError(path, "hyper_parameters", "a CaloVAE checkpoint (hyper_parameters and state_dict)",
                            "neither" if hparams is None else type(hparams).__name__)
    check_targets({"_target_": allowed_name(CaloVAE), **hparams}, path)
    if is_old(hparams):
        raise DataFileError(path, "hyper_parameters", "a checkpoint in the current format",
                            f"one written before the VAE package split (convert it once: {UPGRADE_COMMAND})")
    try:
        model = CaloVAE(**hparams)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataFileError(path, "hyper_parameters", "a CaloVAE checkpoint", f"{type(exc).__name__}: {first}") from exc
    run_id = checkpoint.get("mlflow_run_id")
    run_id = run_id if isinstance(run_id, str) and _RUN_ID.match(run_id) else None
    return LoadedGenerator(model.generator, 0, run_id, str(path.resolve()))


def _from_mlflow(uri: str, tracking_uri: str | None, device: str) -> LoadedGenerator:
    """Download the model's files (no deserialisation), refuse a non-safe format, rebuild from weights."""
    store = tracking_uri or mlflow.get_tracking_uri()  # the CLI resolves detsim's default store (detsim.tracking)
    module, config, meta = load_logged_model(uri, store, device)
    info = _model_provenance(config) | _registry_version(MlflowClient(store), uri)
    run_id = meta.get("run_id") or _run_id_from_uri(uri)
    return LoadedGenerator(module, 0, run_id if isinstance(run_id, str) else None, uri, info)


def _model_provenance(config: Mapping[str, Any]) -> dict[str, str]:
    """The training side's detsim version and commit, as the safe model's config recorded them."""
    return {f"model_{key}": str(config[key]) for key in ("detsim_version", "git_commit") if config.get(key)}


def _registry_version(client: Any, uri: str) -> dict[str, str]:
    """For `models:/name@alias` and `models:/name/version`: the registered name and the version it meant."""
    match = re.match(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))/?$", uri)
    if not match:
        return {}
    name, alias, version = match.groups()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except Exception:  # noqa: BLE001 - the model itself already loaded; this is only a label
        return {"registered_model": name}
    return {"registered_model": name, "registered_model_version": str(mv.version)}


def _run_id_from_uri(uri: str) -> str | None:
    match = re.match(r"runs:/([0-9a-f]{32})", uri)
    return match.group(1) if match else None


def incident_energies(
    n: int | None,
    reference: str | Path | None = None,
    energies: Sequence[float] | None = None,
    spectrum: Mapping[str, Any] | None = None,
    seed: int = 1,
    root: Any = None,
) -> np.ndarray:
    """Incident energies (MeV, float32) from exactly one source.

    reference: its first `n` energies in file order (tiled when `n` is larger), read without its voxels;
    energies: the list cycled to `n`; spectrum: `n` draws from a `conf/spectrum/*.yaml` mapping.
    """
    given = [name for name, v in (("reference", reference), ("energies", energies), ("spectrum", spectrum)) if v]
    if len(given) != 1:
        raise ConfigError(f"generate: give exactly one of reference, energies, spectrum; found {given or 'none'}")
    if reference:
        values = read_incident_energies(reference, root=root, stop=None if n is None else int(n))
        n = len(values) if n is None else int(n)
    elif energies:
        values = np.asarray(list(energies), dtype=np.float32)
        if n is None:
            n = len(values)
    else:
        if n is None:
            raise ConfigError("generate: a spectrum needs n (how many showers)")
        values = np.asarray(sample_energies(spectrum, int(n), np.random.default_rng(seed)))
    if values.size == 0 or np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError(f"generate: incident energies must be positive and finite MeV; got {values[:5]}...")
    return np.resize(values.astype(np.float32), int(n))


def use_compile(setting: bool | str, n: int, min_showers: int) -> bool:
    """Resolve the `compile` option: true/false as given; `auto` compiles jobs of >= `min_showers` showers.

    Why auto: compiling costs tens of seconds once, and the fused generator is ~1.8x faster in steady state
    (docs/vae.md), so it pays off only for large jobs.
    """
    if isinstance(setting, str):
        if setting.lower() != "auto":
            raise ConfigError(f"generate.compile: expected true, false or auto, found {setting!r}")
        return int(n) >= int(min_showers)
    return bool(setting)


def batch_rng(seed: int, batch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Batch `batch`'s own random stream: a resumed job redraws batch b exactly, whatever ran before it."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(batch),)).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state >> np.uint64(1)))


def iter_generated(
    loaded: LoadedGenerator, energies: np.ndarray, batch_size: int = 10_000, seed: int = 1, progress: bool = True,
    compile: bool = False, start: int = 0,
) -> Iterator[CaloShowers]:
    """Yield generated chunks from row `start` (a multiple of batch_size); the showers depend only on
    (model, energies, batch_size, seed, compile).

    compile: run the generator through `torch.compile` (`detsim.runtime.compile_generator`), which fuses the
    per-voxel sampling and calibration ops (~1.8x faster on CPU after a compilation of tens of seconds; worth
    it for millions of showers). It draws the same random numbers as eager; the showers agree to float
    rounding. If compilation fails (no C++ compiler, say), a warning is given and generation goes on eagerly.
    """
    if start % batch_size:
        raise ConfigError(f"generate: a resumed job starts at a whole batch, found row {start} with batch_size {batch_size}")
    device = next(loaded.module.parameters()).device
    module = compile_generator(loaded.module) if compile else loaded.module
    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, torch.inference_mode():
        task = bar.add_task("generate", total=len(energies), completed=start)
        for first in range(start, len(energies), batch_size):
            e = torch.as_tensor(energies[first : first + batch_size], device=device)
            try:
                showers = module(e, batch_rng(seed, first // batch_size, device))
            except Exception as exc:  # noqa: BLE001 - compilation can fail for environment reasons
                if module is loaded.module:
                    raise
                # e.g. no C++ compiler on the node: say so once, redo this batch eagerly, carry on eagerly
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "generating without compilation", RuntimeWarning, stacklevel=2)
                module = loaded.module
                showers = module(e, batch_rng(seed, first // batch_size, device))
            bar.advance(task, len(e))
            yield CaloShowers(e.cpu().numpy(), showers.float().cpu().numpy())


def generation_fingerprint(loaded: LoadedGenerator, energies: np.ndarray, batch_size: int, seed: int,
                           compile: bool) -> dict[str, Any]:
    """What fixes a generated file: the weights and buffers, the energies, batch size, seed, compile and device."""
    weights = hashlib.sha256()
    for name, tensor in sorted(loaded.module.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"model_sha256": weights.hexdigest(), "model_uri": loaded.model_uri or "",
            "energies_sha256": hashlib.sha256(np.ascontiguousarray(energies, dtype=np.float32).tobytes()).hexdigest(),
            "n": int(len(energies)), "batch_size": int(batch_size), "seed": int(seed), "compile": bool(compile),
            "device": str(next(loaded.module.parameters()).device),
            "detsim_version": detsim.__version__}


def provenance_attrs(loaded: LoadedGenerator, seed: int) -> dict[str, Any]:
    """File attributes: model URI, its run, registry version, detsim version and commit, seed, threshold."""
    attrs: dict[str, Any] = {"generator": "detsim CaloVAE", "seed": int(seed),
                             "readout_threshold_mev": loaded.threshold_mev, **provenance(), **loaded.provenance}
    if loaded.model_uri:
        attrs["model_uri"] = loaded.model_uri
    if loaded.mlflow_run_id:
        attrs["mlflow_run_id"] = loaded.mlflow_run_id
    return attrs


def generate_to_file(
    loaded: LoadedGenerator,
    energies: np.ndarray,
    out: str | Path,
    batch_size: int = 10_000,
    seed: int = 1,
    root: Any = None,
    progress: bool = True,
    compile: bool = False,
    overwrite: bool = True,
    resume: bool = True,
) -> Path:
    """Write generated showers to `out` (HDF5 CaloChallenge layout, or ROOT by extension), atomically.

    HDF5 files carry their provenance as attributes (`provenance_attrs`), so an evaluation can find the
    training run and anyone can tell which model, version and commit made them. A killed job leaves
    `<out stem>.partial/`; the same call continues it (`resume=False` starts over).
    """
    attrs = provenance_attrs(loaded, seed)
    fingerprint = generation_fingerprint(loaded, energies, batch_size, seed, compile)
    with resumable_output(out, loaded.n_voxels, fingerprint, attrs=attrs, root=root,
                          overwrite=overwrite, resume=resume) as writer:
        for chunk in iter_generated(loaded, energies, batch_size, seed, progress, compile, start=writer.n_written):
            writer.append(chunk)
    return Path(out)
