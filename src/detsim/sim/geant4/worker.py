"""One Geant4 per process: a worker builds the application once, then simulates the blocks it is sent.

Blocks are independent: the parent draws each block's energies and Geant4 seed from (run seed, block),
the worker reseeds MixMax before every block, so a shower does not depend on which worker made it or on
how many workers there are. The worker leaves with `os._exit` after flushing its queue: geant4-pybind can
crash in interpreter teardown, and the run manager is a per-process singleton.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from detsim.errors import DetsimError
from detsim.sim.geant4 import bindings
from detsim.sim.geant4.calorimeter import SamplingCalorimeter


@dataclass(frozen=True)
class WorkerSpec:
    calo: SamplingCalorimeter
    particle: str
    physics_list: str
    em_physics: str | None
    cut_mm: float
    environ: dict[str, str]  # the 12 G4*DATA variables
    stepping_check: bool = False
    warmup_MeV: float = 1000.0
    verbose: bool = False


@dataclass
class BlockResult:
    block: int
    cells: np.ndarray  # (n, n_voxels) raw active-material deposit per cell, MeV (float64)
    absorber: np.ndarray  # (n,) absorber deposit
    annulus: np.ndarray  # (n,) active deposit outside the read-out radius
    cpu: np.ndarray  # (n,) CPU seconds per shower
    stepping_cells: np.ndarray | None = None
    misplaced_MeV: float = 0.0


class Application:
    """The initialised Geant4 run manager of this process and its actions."""

    def __init__(self, spec: WorkerSpec) -> None:
        g4, build = bindings.load(spec.environ)  # the bindings find the data-set variables set
        self.g4, self.spec = g4, spec
        self.version = str(g4.G4Version).strip("$ ").replace("Name: ", "")
        self.run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
        ui = g4.G4UImanager.GetUIpointer()
        for command in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0"):
            ui.ApplyCommand(command)
        self.detector = build.Calorimeter(spec.calo)
        self.physics = build.physics_list(spec.physics_list, spec.em_physics, spec.cut_mm)
        self.run_manager.SetUserInitialization(self.detector)
        self.run_manager.SetUserInitialization(self.physics)
        self.gun = build.Gun(spec.particle, -0.5 * spec.calo.length_mm - 1.0)
        self.recorder = build.Recorder(spec.calo)
        self.stepping = build.SteppingCheck(spec.calo, self.recorder) if spec.stepping_check else None
        self.actions = build.Actions(self.gun, self.recorder, self.stepping)
        self.run_manager.SetUserInitialization(self.actions)
        self.engine = g4.MixMaxRng()
        g4.G4Random.setTheEngine(self.engine)
        self.run_manager.Initialize()
        # an unstored warm-up shower: first-event initialisations happen before any seeded block
        g4.G4Random.setTheSeed(1)
        self._beam_on(np.array([spec.warmup_MeV]), store=False)

    def _beam_on(self, energies: np.ndarray, store: bool = True) -> None:
        n = len(energies) if store else 0
        self.recorder.reset(n)
        if self.stepping is not None:
            self.stepping.reset(n)
        self.gun.energies = [float(e) for e in energies]
        self.run_manager.BeamOn(len(energies))

    def simulate(self, block: int, g4_seed: int, energies: np.ndarray) -> BlockResult:
        self.g4.G4Random.setTheSeed(int(g4_seed))
        self._beam_on(energies)
        r = self.recorder
        result = BlockResult(block, r.cells, r.absorber, r.annulus, r.cpu)
        if self.stepping is not None:
            result.stepping_cells, result.misplaced_MeV = self.stepping.cells, self.stepping.misplaced
        return result


def main(spec: WorkerSpec, tasks: Any, results: Any) -> None:
    """Process entry: ('ready', version), then one BlockResult per task until a None task; os._exit at the end."""
    code = 0
    try:
        if not spec.verbose:  # Geant4's banner and table printouts go to stdout; keep the CLI's output clean
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
        app = Application(spec)
        results.put(("ready", app.version))
        while (task := tasks.get()) is not None:
            block, g4_seed, energies = task
            results.put(("block", app.simulate(block, g4_seed, energies)))
    except BaseException as exc:  # reported to the parent, which raises it
        code = 1
        kind = "user-error" if isinstance(exc, DetsimError) else "error"
        results.put((kind, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        results.close()
        results.join_thread()
        sys.stdout.flush()
        os._exit(code)
