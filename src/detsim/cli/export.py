"""`detsim-export`: write a trained generator as an ONNX or TorchScript graph (docs/export.md)."""

from __future__ import annotations

from importlib import metadata

from omegaconf import DictConfig

from detsim.cli.app import hydra_app
from detsim.errors import ConfigError
from detsim.generate import load_generator
from detsim.runtime.export import FORMATS, export, input_names


def export_model(cfg: DictConfig) -> str:
    """Run one export from a composed `conf/export.yaml`; return the output path."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"export: format expected one of {FORMATS}, found {cfg.format!r}")
    loaded = load_generator(cfg.ckpt, tracking_uri=cfg.get("tracking_uri"), device="cpu")
    try:
        version = metadata.version("detsim")
    except metadata.PackageNotFoundError:
        version = "unknown"
    meta = {"source": str(cfg.ckpt), "detsim_version": version}
    if loaded.mlflow_run_id:
        meta["mlflow_run_id"] = loaded.mlflow_run_id
    out = export(loaded.module, cfg.out, cfg.format, meta)
    print(f"wrote {cfg.format} graph to {out}: inputs {', '.join(input_names(loaded.module))} -> showers "
          f"({loaded.n_voxels} voxels, MeV)")
    return str(out)


@hydra_app("export")
def main(cfg: DictConfig) -> str:
    return export_model(cfg)


if __name__ == "__main__":
    main()
