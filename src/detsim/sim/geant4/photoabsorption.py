"""Stand-in photoelectric tables in the format of Geant4's G4LivermorePhotoElectricModel (`epics2017/phot`).

One shell per element (no shell structure: no fluorescence, the binding energy E_b = 100 eV is deposited
on the spot; W K x-rays would range ~0.15 mm, far below a read-out cell). The cross section is a simple
parametrisation, sigma = C Z^n g(E) / J below the K edge, normalised to the photoelectric attenuation of
tungsten and silicon at 100 keV (~3.6 and ~0.022 cm2/g), falling as E^-3 up to 0.5 MeV and E^-1 above;
J is the K-edge jump (4.8 for W) and E_K = 13.6 eV (Z - 1)^2 (Moseley). Good to ~20 % where the
photoelectric effect matters (W below ~0.5 MeV, where photons travel < 1 mm): a stand-in, not EPICS.

Files per Z (energies MeV, cross sections barn): `pe-cs-Z.dat` (G4PhysicsFreeVector text of sigma E^3),
`pe-high-Z.dat` and `pe-low-Z.dat` (`n_shells n_shells_used E_threshold`, then E_b and six coefficients
a_i of sigma = sum a_i / E^i used above E_threshold).
"""

from __future__ import annotations

import numpy as np

BINDING_MEV = 1e-4
E_MAX_MEV = 1e5
NORM_BARN = 1.556e-5  # C: sigma(W, 100 keV) = 1099 b
Z_POWER = 4.2  # sigma(W) / sigma(Si) at 100 keV = (74/14)^4.2
E_BREAK_MEV = 0.5


def k_edge_mev(z: int) -> float:
    return 13.6e-6 * (z - 1) ** 2


def k_jump(z: int) -> float:
    return 1.0 + 50.0 / z**0.6


def cross_section_barn(z: int, energy_mev: np.ndarray) -> np.ndarray:
    """Photoelectric cross section per atom (barn) of the stand-in."""
    e = np.asarray(energy_mev, dtype=float)
    shape = np.where(e <= E_BREAK_MEV, (0.1 / e) ** 3, (0.1 / E_BREAK_MEV) ** 3 * (E_BREAK_MEV / e))
    below_k = e < k_edge_mev(z)
    return NORM_BARN * z**Z_POWER * shape / np.where(below_k, k_jump(z), 1.0)


def energy_nodes(z: int, per_decade: int = 24) -> np.ndarray:
    decades = np.log10(E_MAX_MEV / BINDING_MEV)
    nodes = np.logspace(np.log10(BINDING_MEV), np.log10(E_MAX_MEV), int(decades * per_decade) + 1)
    edge = k_edge_mev(z)
    if BINDING_MEV < edge < E_MAX_MEV:
        nodes = np.union1d(nodes[np.abs(np.log(nodes / edge)) > 1e-3], [edge * (1 - 1e-6), edge])
    return nodes


def format_cs(z: int) -> str:
    """`pe-cs-Z.dat`: sigma E^3 (barn MeV^3) on the energy nodes, G4PhysicsVector ASCII layout."""
    e = energy_nodes(z)
    v = cross_section_barn(z, e) * e**3
    head = f"{e[0]:.8g} {e[-1]:.8g} {e.size}\n{e.size}\n"
    return head + "\n".join(f"{a:.10g} {b:.8g}" for a, b in zip(e, v)) + "\n"


def format_params(z: int) -> str:
    """`pe-high-Z.dat` / `pe-low-Z.dat`: one shell; above E_MAX sigma = a1 / E continues the table."""
    a1 = float(cross_section_barn(z, np.array([E_MAX_MEV]))[0]) * E_MAX_MEV
    return f"1 1 {E_MAX_MEV:.8g}\n{BINDING_MEV:.8g} {a1:.8g} 0 0 0 0 0\n"
