"""detsim-convert: copy a shower file between HDF5 (CaloChallenge/CaloGAN) and ROOT layouts, chunk by chunk.

`input=` may be a glob or a list of shards (`input='prod/g4_*.h5'`): they are merged into one output file.

The output is first written beside its target under a temporary name and moved into place only when
every chunk has been read, validated and written, so a failed conversion leaves no half file behind.
Without a named geometry the voxel count must be one of a known geometry's (conf/geometry/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from detsim.cli.app import hydra_app
from detsim.config import flag
from detsim.errors import ConfigError, DataFileError
from detsim.geometry import check_known_voxel_count, load_geometry
from detsim.io import count_showers, file_format, iter_showers, open_writer
from detsim.io.shards import expand_shards
from detsim.io.writer import atomic_output
from detsim.io.validation import ValidationRules


def convert(
    source: Any,
    target: str | Path,
    chunk_size: int = 10_000,
    n_voxels: int | None = None,
    rules: ValidationRules = ValidationRules(),
    layout: Any = None,
    overwrite: bool = False,
    progress: bool = True,
    known_geometry: bool = False,
) -> int:
    """Convert `source` (a file, a glob or a list of shards, merged) into `target`; returns the number of showers.

    `layout` (a RootLayout or a `conf/io/root` mapping) describes every ROOT side; None is the fixed layout.
    `known_geometry` (the CLI without geometry=): refuse a voxel count that no `conf/geometry` file has.
    """
    target = Path(target)
    file_format(target)  # reject an unknown output suffix before reading anything
    files = expand_shards(source)
    if any(f.resolve() == target.resolve() for f in files):
        raise DataFileError(target, None, "an output path different from the input", "the input itself")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    source = files if len(files) > 1 else files[0]
    total = count_showers(source, root=layout)
    writer: Any = None
    with atomic_output(target, overwrite) as partial:
        try:
            with _progress(progress) as bar:
                label = files[0].name if len(files) == 1 else f"{len(files)} shards"
                task = bar.add_task(f"{label} -> {target.name}", total=total)
                for chunk in iter_showers(source, chunk_size, n_voxels, rules, root=layout):
                    if writer is None:
                        if n_voxels is None and known_geometry:
                            check_known_voxel_count(files[0], "voxels per shower", chunk.n_voxels)
                        writer = open_writer(partial, chunk.n_voxels, root=layout)
                    writer.append(chunk)
                    bar.advance(task, len(chunk))
            if writer is None:
                raise DataFileError(source, None, "at least one shower", "none read")
        finally:
            if writer is not None:
                writer.close()
    return writer.n_written


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not enabled
    )


@hydra_app("convert")
def main(cfg: DictConfig) -> None:
    geometry = cfg.get("geometry")
    n_voxels = load_geometry(OmegaConf.to_container(geometry, resolve=True)).n_voxels if geometry else None
    n = convert(
        cfg.input,
        cfg.output,
        chunk_size=int(cfg.chunk_size),
        n_voxels=n_voxels,
        rules=ValidationRules.from_config(OmegaConf.to_container(cfg.validation, resolve=True)),
        layout=OmegaConf.to_container(cfg.io.root, resolve=True),  # uproot is imported only for ROOT files
        overwrite=flag(cfg.overwrite, "overwrite"),
        known_geometry=n_voxels is None,
    )
    print(f"wrote {n} showers to {cfg.output}")


if __name__ == "__main__":
    main()
