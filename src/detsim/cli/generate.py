"""`detsim-generate`: sample showers from a trained VAE into an HDF5 (or ROOT) shower file."""

from __future__ import annotations

from omegaconf import DictConfig

from detsim.cli.app import hydra_app, positive_int
from detsim.config import flag, to_plain
from detsim.generate import generate_to_file, incident_energies, load_generator, use_compile
from detsim.io import file_format
from detsim.io.writer import check_output_file
from detsim.runtime.allocator import keep_freed_buffers
from detsim.tracking import resolve_tracking_uri


def generate(cfg: DictConfig) -> str:
    """Run one generation from a composed `conf/generate.yaml`; return the output path."""
    n = None if cfg.get("n") is None else positive_int(cfg.n, "n")
    batch_size = positive_int(cfg.batch_size, "batch_size")
    overwrite = flag(cfg.get("overwrite", False), "overwrite")
    resume, progress = flag(cfg.get("resume", True), "resume"), flag(cfg.get("progress", True), "progress")
    file_format(cfg.out)
    check_output_file(cfg.out, overwrite)  # before the model is loaded: a bad out= costs nothing
    loaded = load_generator(cfg.ckpt, tracking_uri=resolve_tracking_uri(cfg.get("tracking_uri")),
                            device=cfg.get("device", "cpu"))
    root = to_plain(cfg.get("root"))
    spectrum = to_plain(cfg.get("spectrum"))
    energies = incident_energies(
        n, reference=cfg.get("reference"), energies=to_plain(cfg.get("energies")),
        spectrum=spectrum, seed=int(cfg.seed), root=root,
    )
    keep_freed_buffers(int(cfg.get("heap_buffers_mb", 0)))  # before the first batch allocates
    compile = use_compile(cfg.get("compile", False), len(energies), int(cfg.get("compile_min_showers", 5_000_000)))
    out = generate_to_file(loaded, energies, cfg.out, batch_size, int(cfg.seed), root=root,
                           progress=progress, compile=compile,
                           overwrite=overwrite, resume=resume)
    run = f" (MLflow run {loaded.mlflow_run_id})" if loaded.mlflow_run_id else ""
    print(f"wrote {len(energies)} showers to {out}{run}")
    return str(out)


@hydra_app("generate")
def main(cfg: DictConfig) -> str:
    return generate(cfg)


if __name__ == "__main__":
    main()
