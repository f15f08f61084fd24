"""`detsim-simulate simulator=geant4`: Geant4 showers in a detsim Geometry, or the sampling-fraction calibration.

  detsim-simulate simulator=geant4 geometry=calochallenge_ds2 particle=electron n=1000 seed=1 n_workers=2 out=g4.h5
  detsim-simulate simulator=geant4 simulator.mode=calibrate geometry=calochallenge_ds2 n=200 seed=1

Stored voxel energy = active-material deposit / sampling fraction, where the deposit passes the per-voxel
threshold (zero otherwise). Each finished block becomes a file in `<out stem>.partial/`, merged into `out` at
the end (`detsim.io.resume`: a killed job rerun with the same command continues after its last block);
with `shard=k` a SLURM array task writes shard k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from omegaconf import DictConfig

import detsim
from detsim.config import flag, run_fingerprint
from detsim.errors import ConfigError
from detsim.files import atomic_output, check_output_file
from detsim.io.resume import resumable_output
from detsim.paths import config_dir
from detsim.showers import CaloShowers
from detsim.sim.calo.config import SimulationPlan, plan_from_config
from detsim.sim.geant4 import bindings
from detsim.sim.geant4.calorimeter import SamplingCalorimeter, calorimeter_from_config
from detsim.sim.geant4.datasets import is_standin, resolve_datasets
from detsim.sim.geant4.pool import BlockTask, Geant4Pool, block_tasks
from detsim.sim.geant4.progress import ProgressReporter
from detsim.sim.geant4.worker import BlockResult, WorkerSpec

def digitise(cells: np.ndarray, calo: SamplingCalorimeter, sampling_fraction: float) -> np.ndarray:
    """Per-voxel threshold on the active deposit, then division by the sampling fraction (float32, MeV)."""
    kept = np.where(cells >= calo.threshold_mev, cells, 0.0)
    return (kept / sampling_fraction).astype(np.float32)


def sampling_fraction(results: list[BlockResult]) -> float:
    """E_active / (E_active + E_absorber) summed over the showers (active includes the unread annulus)."""
    active = sum(float(r.cells.sum() + r.annulus.sum()) for r in results)
    absorber = sum(float(r.absorber.sum()) for r in results)
    return active / (active + absorber)


@dataclass
class Geant4Setup:
    plan: SimulationPlan
    calo: SamplingCalorimeter
    spec: WorkerSpec
    standin: bool
    sim: dict[str, Any] = field(default_factory=dict)


def setup_from_config(cfg: DictConfig, stepping_check: bool = False) -> Geant4Setup:
    """Everything a run needs, checked in this process before any worker starts (errors exit 2)."""
    bindings.require()
    plan = plan_from_config(cfg)
    calo = calorimeter_from_config(plan.detector, plan.geometry)
    g4cfg = cfg.get("geant4") or {}
    environ = resolve_datasets(g4cfg.get("data_dir"))
    sim = cfg.simulator
    physics = str(sim.physics_list)
    standin = is_standin(environ)
    if standin and physics not in ("G4EmStandardPhysics_option1", "G4EmStandardPhysics_option4", "G4EmStandardPhysics"):
        raise ConfigError(f"simulator.physics_list: expected an EM-only list with the stand-in data sets, found {physics!r} (it needs Geant4's real data)")
    spec = WorkerSpec(
        calo=calo, particle=plan.particle, physics_list=physics, em_physics=sim.get("em_physics"),
        cut_mm=float(sim.production_cut_mm), environ=environ, stepping_check=stepping_check,
        warmup_MeV=float(sim.get("warmup_MeV", 1000.0)), verbose=bool(sim.get("verbose", False)),
    )
    return Geant4Setup(plan, calo, spec, standin, dict(sim))


def iter_results(setup: Geant4Setup, tasks: list[BlockTask], n_workers: int, versions: list[str] | None = None) -> Iterator[BlockResult]:
    with Geant4Pool(setup.spec, n_workers) as pool:
        for result in pool.run(tasks):
            if versions is not None and pool.version and not versions:
                versions.append(pool.version)
            yield result


def simulate_raw(cfg: DictConfig, n: int, seed: int, energies: np.ndarray | None = None, n_workers: int = 1,
                 stepping_check: bool = False) -> tuple[Geant4Setup, list[BlockResult]]:
    """Raw per-block results in memory (tests, benchmarks, calibration)."""
    setup = setup_from_config(cfg, stepping_check)
    tasks = block_tasks(n, seed, int(cfg.simulator.block_size), setup.plan.spectrum, energies)
    return setup, list(iter_results(setup, tasks, n_workers))


def shard_path(out: str, shard: int | None) -> Path:
    """`out` for shard k: `{shard}` in the name is replaced, else `_shardNNNN` goes before the suffix."""
    if shard is None:
        return Path(out)
    if "{shard}" in out:
        return Path(out.replace("{shard}", f"{shard:04d}"))
    path = Path(out)
    return path.with_name(f"{path.stem}_shard{shard:04d}{path.suffix}")


def write_sampling_fraction(path: Path, value: float) -> None:
    """Set `geant4.sampling_fraction` in a detector YAML, keeping its comments (one line rewritten)."""
    text = path.read_text()
    pattern = re.compile(r"^(\s+sampling_fraction:\s*)([^#\n]*?)(\s*(#.*)?)$", re.M)
    if not pattern.search(text):
        raise ConfigError(f"{path}: key 'geant4.sampling_fraction': expected a line to update, found none")
    with atomic_output(path) as partial:  # the user's detector config: a kill leaves the old file or the new one
        partial.write_text(pattern.sub(lambda m: f"{m.group(1)}{value:.5f}{m.group(3)}", text, count=1))


def calibrate(cfg: DictConfig) -> float:
    setup = setup_from_config(cfg)
    n_workers = int(cfg.get("n_workers", 1))
    tasks = block_tasks(int(cfg.n), int(cfg.seed), int(setup.sim["block_size"]), setup.plan.spectrum)
    fraction = sampling_fraction(list(iter_results(setup, tasks, n_workers)))
    target = cfg.simulator.get("calibrate_into") or str(config_dir() / "detector" / f"{setup.calo.name}.yaml")
    write_sampling_fraction(Path(target), fraction)
    label = "stand-in" if setup.standin else "real"
    print(f"sampling fraction {fraction:.5f} from {cfg.n} {setup.plan.particle} showers ({label} Geant4 data) -> {target}")
    return fraction


def file_attrs(cfg: DictConfig, setup: Geant4Setup, version: str, shard: int | None) -> dict[str, Any]:
    c = setup.calo
    return {
        "simulator": "geant4", "geant4_version": version, "physics_list": setup.spec.physics_list,
        "em_physics": setup.spec.em_physics or "", "production_cut_mm": setup.spec.cut_mm,
        "sampling_fraction": c.sampling_fraction, "threshold_keV": c.threshold_mev * 1e3,
        "geometry": setup.plan.geometry.name, "detector": c.name, "calorimeter": c.describe(),
        "particle": setup.plan.particle, "seed": int(cfg.seed), "shard": -1 if shard is None else shard,
        "block_size": int(setup.sim["block_size"]), "geant4_data": "stand-in" if setup.standin else "real",
        "detsim_version": detsim.__version__,
    }


def run(cfg: DictConfig) -> Path | float:
    """The `simulator.entry` of conf/simulator/geant4.yaml."""
    mode = str(cfg.simulator.get("mode", "simulate"))
    if mode == "calibrate":
        return calibrate(cfg)
    if mode != "simulate":
        raise ConfigError(f"key 'simulator.mode': expected simulate or calibrate, found {mode!r}")
    setup = setup_from_config(cfg)
    c = setup.calo
    if c.sampling_fraction is None:
        raise ConfigError(f"detector {c.name!r}: key 'geant4.sampling_fraction': expected a value, found none (run simulator.mode=calibrate first)")
    n, block_size = int(cfg.n), int(setup.sim["block_size"])
    shard = None if cfg.get("shard") is None else int(cfg.shard)
    first_block = 0 if shard is None else shard * -(-n // block_size)
    tasks = block_tasks(n, int(cfg.seed), block_size, setup.plan.spectrum, first_block=first_block)
    out = shard_path(str(cfg.out), shard)
    overwrite = flag(cfg.get("overwrite", False), "overwrite")
    check_output_file(out, overwrite)  # before a worker starts
    label = "stand-in" if setup.standin else "real"
    fingerprint = {**run_fingerprint(cfg), "geant4_data": label}
    progress = ProgressReporter(n, f"{setup.plan.particle} in {setup.plan.geometry.name}", flag(cfg.get("progress", True), "progress"),
                                float(setup.sim.get("progress_interval_s", 30.0)))
    attrs = file_attrs(cfg, setup, "unknown", shard)
    try:
        with resumable_output(out, setup.plan.geometry.n_voxels, fingerprint, attrs=attrs,
                              overwrite=overwrite, resume=flag(cfg.get("resume", True), "resume")) as writer:
            done_blocks = writer.n_written // block_size
            progress.advance(writer.n_written)
            versions: list[str] = []
            todo = tasks[done_blocks:]
            for i, result in enumerate(iter_results(setup, todo, int(cfg.get("n_workers", 1)), versions)):
                if i == 0 and versions:  # the worker's Geant4 version is known once it is up
                    writer.attrs["geant4_version"] = versions[0]
                writer.append(CaloShowers(todo[i].energies, digitise(result.cells, c, c.sampling_fraction)))
                progress.advance(len(result.cpu))
    finally:
        progress.close()
    print(f"wrote {n} Geant4 {setup.plan.particle} showers ({setup.plan.geometry.describe()}, {label} data) to {out}")
    return out
