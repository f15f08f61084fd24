"""The Geant4 application for one worker process: geometry, C++ scorers, physics list, primaries, actions.

Imports geant4_pybind, so it is imported only by `bindings.load` in a worker process, never in the CLI's own process.
Volumes: Calo (tube) -> Layer (replica along z, one per read-out layer) -> SubLayer (replica along z)
-> Absorber + Active; Active holds the read-out disk (r < last radial edge), divided by G4PVReplica into
angular wedges (kPhi, copy 0 starting at alpha = -pi) and then radial rings (kRho; placements when the
ring widths differ). A G4MultiFunctionalDetector with G4PSEnergyDeposit3D on the rings scores the
deposit per (read-out layer, wedge, ring) from the replica copy numbers, in C++; two plain
G4PSEnergyDeposit scorers sum the absorber and the unread active annulus (sampling fraction).
"""

from __future__ import annotations

import math
import time
from typing import Any

import geant4_pybind as g4
import numpy as np

from detsim.errors import ConfigError
from detsim.sim.geant4.calorimeter import SamplingCalorimeter

PARTICLES = {"electron": "e-", "positron": "e+", "photon": "gamma", "pion": "pi+", "pi+": "pi+", "pi-": "pi-"}
# copy-number depths seen from a ring: ring 0, wedge 1, read-out disk 2, active 3, sub-layer 4, layer 5
DEPTH_RING, DEPTH_WEDGE, DEPTH_LAYER = 0, 1, 5


def _material(name: str) -> Any:
    material = g4.G4NistManager.Instance().FindOrBuildMaterial(name)
    if material is None:
        raise ConfigError(f"detector geant4 material: expected a Geant4 NIST name (e.g. G4_W, G4_Si, G4_PbWO4), found {name!r}")
    return material


class Calorimeter(g4.G4VUserDetectorConstruction):
    """Builds the sampling calorimeter and attaches the scorers (names: cells/edep, absorber/edep, annulus/edep)."""

    def __init__(self, calo: SamplingCalorimeter) -> None:
        super().__init__()
        self.calo = calo
        self.keep: list[Any] = []  # Geant4 does not own Python-created objects: keep them alive

    def _tube(self, name: str, r0: float, r1: float, half_z: float, phi0: float = 0.0, dphi: float = 2 * math.pi):
        solid = g4.G4Tubs(name, r0, r1, half_z, phi0, dphi)
        self.keep.append(solid)
        return solid

    def _lv(self, solid: Any, material: Any, name: str):
        lv = g4.G4LogicalVolume(solid, material, name)
        self.keep.append(lv)
        return lv

    def Construct(self) -> Any:  # noqa: N802 (Geant4 API)
        c = self.calo
        vacuum = _material("G4_Galactic")
        absorber, active = _material(c.absorber_material), _material(c.active_material)
        world = self._lv(g4.G4Box("World", 1.2 * c.radius_mm, 1.2 * c.radius_mm, 0.5 * c.length_mm + 100.0), vacuum, "World")
        self.keep.append(world.GetSolid())
        world_pv = g4.G4PVPlacement(None, g4.G4ThreeVector(), world, "World", None, False, 0)
        calo = self._lv(self._tube("Calo", 0, c.radius_mm, 0.5 * c.length_mm), vacuum, "Calo")
        layer_mm = c.sublayer_mm * c.sublayers_per_readout
        layer = self._lv(self._tube("Layer", 0, c.radius_mm, 0.5 * layer_mm), vacuum, "Layer")
        sub = self._lv(self._tube("SubLayer", 0, c.radius_mm, 0.5 * c.sublayer_mm), vacuum, "SubLayer")
        absorber_lv = self._lv(self._tube("Absorber", 0, c.radius_mm, 0.5 * c.absorber_mm), absorber, "Absorber")
        active_lv = self._lv(self._tube("Active", 0, c.radius_mm, 0.5 * c.active_mm), active, "Active")
        r_ro = c.readout_radius_mm
        readout = self._lv(self._tube("Readout", 0, r_ro, 0.5 * c.active_mm), active, "Readout")
        dphi = 2 * math.pi / c.n_alpha
        wedge = self._lv(self._tube("Wedge", 0, r_ro, 0.5 * c.active_mm, -0.5 * dphi, dphi), active, "Wedge")
        self.keep += [
            world_pv,
            g4.G4PVPlacement(None, g4.G4ThreeVector(), calo, "Calo", world, False, 0),
            g4.G4PVReplica("Layer", layer, calo, g4.kZAxis, c.n_layers, layer_mm, 0.0),
            g4.G4PVReplica("SubLayer", sub, layer, g4.kZAxis, c.sublayers_per_readout, c.sublayer_mm, 0.0),
            g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, -0.5 * c.active_mm), absorber_lv, "Absorber", sub, False, 0),
            g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, 0.5 * c.absorber_mm), active_lv, "Active", sub, False, 0),
            g4.G4PVPlacement(None, g4.G4ThreeVector(), readout, "Readout", active_lv, False, 0),
            g4.G4PVReplica("Wedge", wedge, readout, g4.kPhi, c.n_alpha, dphi, -math.pi),
        ]
        if c.uniform_rings:
            dr = c.r_edges[1] - c.r_edges[0]
            ring = self._lv(self._tube("Ring", 0, dr, 0.5 * c.active_mm, -0.5 * dphi, dphi), active, "Ring")
            self.keep.append(g4.G4PVReplica("Ring", ring, wedge, g4.kRho, c.n_r, dr, 0.0))
        else:
            ring_solids = [self._tube(f"Ring{i}", c.r_edges[i], c.r_edges[i + 1], 0.5 * c.active_mm, -0.5 * dphi, dphi) for i in range(c.n_r)]
            ring = self._lv(ring_solids[0], active, "Ring")
            for i, solid in enumerate(ring_solids):
                lv = ring if i == 0 else self._lv(solid, active, "Ring")
                self.keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(), lv, f"Ring{i}", wedge, False, i))
        return world_pv

    def ConstructSDandField(self) -> None:  # noqa: N802 (Geant4 API)
        c = self.calo
        sdm = g4.G4SDManager.GetSDMpointer()
        for name, volume, scorer in (
            ("cells", "Ring", g4.G4PSEnergyDeposit3D("edep", c.n_layers, c.n_alpha, c.n_r, DEPTH_LAYER, DEPTH_WEDGE, DEPTH_RING)),
            ("absorber", "Absorber", g4.G4PSEnergyDeposit("edep")),
            ("annulus", "Active", g4.G4PSEnergyDeposit("edep")),
        ):
            mfd = g4.G4MultiFunctionalDetector(name)
            sdm.AddNewDetector(mfd)
            mfd.RegisterPrimitive(scorer)
            # every logical volume called `volume` (non-uniform rings have one per ring)
            self.SetSensitiveDetector(volume, mfd, True)
            self.keep += [mfd, scorer]


def physics_list(name: str, em: str | None, cut_mm: float) -> Any:
    """A reference list (e.g. FTFP_BERT, with `em` replacing its EM part) or an EM constructor alone."""
    cls = getattr(g4, name, None)
    if cls is None:
        raise ConfigError(f"simulator.physics_list: expected a Geant4 physics list or EM constructor, found {name!r}")
    if isinstance(cls, type) and issubclass(cls, g4.G4VModularPhysicsList):
        plist = cls()
        if em:
            plist.ReplacePhysics(getattr(g4, em)())
    else:
        plist = g4.G4VModularPhysicsList()
        plist.RegisterPhysics(cls())
    plist.SetDefaultCutValue(cut_mm * g4.mm)
    return plist


class Gun(g4.G4VUserPrimaryGeneratorAction):
    """One particle per event along +z at (0, 0), starting just in front of the calorimeter."""

    def __init__(self, particle: str, z0: float) -> None:
        super().__init__()
        name = PARTICLES.get(particle, particle)
        definition = g4.G4ParticleTable.GetParticleTable().FindParticle(name)
        if definition is None:
            raise ConfigError(f"key 'particle': expected one of {sorted(PARTICLES)}, found {particle!r}")
        self.gun = g4.G4ParticleGun(1)
        self.gun.SetParticleDefinition(definition)
        self.gun.SetParticlePosition(g4.G4ThreeVector(0, 0, z0))
        self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(0, 0, 1))
        self.energies: list[float] = []

    def GeneratePrimaries(self, event: Any) -> None:  # noqa: N802
        self.gun.SetParticleEnergy(self.energies[event.GetEventID()] * g4.MeV)
        self.gun.GeneratePrimaryVertex(event)


class Recorder(g4.G4UserEventAction):
    """Copies the scorers' hit maps of each event into numpy rows (raw active-material deposits, MeV)."""

    def __init__(self, calo: SamplingCalorimeter) -> None:
        super().__init__()
        self.n_vox = calo.n_layers * calo.n_alpha * calo.n_r
        self.ids: dict[str, int] = {}
        self.reset(0)

    def reset(self, n: int) -> None:
        self.cells = np.zeros((n, self.n_vox))
        self.absorber = np.zeros(n)
        self.annulus = np.zeros(n)
        self.cpu = np.zeros(n)
        self._t0 = 0.0

    def BeginOfEventAction(self, event: Any) -> None:  # noqa: N802
        self._t0 = time.process_time()

    def EndOfEventAction(self, event: Any) -> None:  # noqa: N802
        i = event.GetEventID()
        if i >= len(self.cpu):
            return  # warm-up shower
        hce = event.GetHCofThisEvent()
        if not self.ids:
            sdm = g4.G4SDManager.GetSDMpointer()
            self.ids = {k: sdm.GetCollectionID(f"{k}/edep") for k in ("cells", "absorber", "annulus")}
        row = self.cells[i]
        for index, value in hce.GetHC(self.ids["cells"]):
            row[index] += value
        self.absorber[i] = sum(v for _, v in hce.GetHC(self.ids["absorber"]))
        self.annulus[i] = sum(v for _, v in hce.GetHC(self.ids["annulus"]))
        self.cpu[i] = time.process_time() - self._t0


class SteppingCheck(g4.G4UserSteppingAction):
    """The slow Python cross-check of the scorer: the same per-cell sums from every step, plus the energy
    whose step midpoint lies in another cell than its replica copy numbers say (geometry-mapping check)."""

    def __init__(self, calo: SamplingCalorimeter, recorder: Recorder) -> None:
        super().__init__()
        self.calo, self.recorder = calo, recorder
        self.z_front = -0.5 * calo.length_mm
        self.layer_mm = calo.sublayer_mm * calo.sublayers_per_readout
        self.edges = np.asarray(calo.r_edges)
        self.reset(0)

    def reset(self, n: int) -> None:
        self.cells = np.zeros((n, self.recorder.n_vox))
        self.misplaced = 0.0

    def UserSteppingAction(self, step: Any) -> None:  # noqa: N802
        event = g4.G4EventManager.GetEventManager().GetConstCurrentEvent().GetEventID()
        if event >= len(self.cells):
            return
        pre = step.GetPreStepPoint()
        touch = pre.GetTouchable()
        if touch.GetVolume(0).GetLogicalVolume().GetName() != "Ring":
            return
        edep = step.GetTotalEnergyDeposit()
        if edep == 0:
            return
        c = self.calo
        layer, wedge, ring = (touch.GetReplicaNumber(d) for d in (DEPTH_LAYER, DEPTH_WEDGE, DEPTH_RING))
        index = (layer * c.n_alpha + wedge) * c.n_r + ring
        self.cells[event, index] += edep
        a, b = pre.GetPosition(), step.GetPostStepPoint().GetPosition()
        x, y, z = 0.5 * (a.x + b.x), 0.5 * (a.y + b.y), 0.5 * (a.z + b.z)
        alpha_bin = min(int((math.atan2(y, x) + math.pi) / (2 * math.pi) * c.n_alpha), c.n_alpha - 1)
        r_bin = int(np.searchsorted(self.edges, math.hypot(x, y), side="right")) - 1
        z_bin = int((z - self.z_front) // self.layer_mm)
        if (z_bin, alpha_bin, r_bin) != (layer, wedge, ring):
            self.misplaced += edep


class Actions(g4.G4VUserActionInitialization):
    def __init__(self, gun: Gun, recorder: Recorder, stepping: SteppingCheck | None) -> None:
        super().__init__()
        self.gun, self.recorder, self.stepping = gun, recorder, stepping

    def Build(self) -> None:  # noqa: N802
        self.SetUserAction(self.gun)
        self.SetUserAction(self.recorder)
        if self.stepping is not None:
            self.SetUserAction(self.stepping)
