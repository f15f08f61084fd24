"""Build the stand-in Geant4 data sets: `python -m detsim.sim.geant4.standin <dir>`.

Writes the 12 data-set folders (`<dir>/<prefix>-standin`) so geant4-pybind imports. Only G4EMLOW has
content: the two tables EM option1 reads, bremsstrahlung (`brem_SB/br<Z>`, see `brems`) and photoelectric
(`epics2017/phot/pe-*-<Z>.dat`, see `photoabsorption`), for Z = 1..100, and G4ENSDFSTATE holds an empty
nuclide list (read when the ion table initialises; EM showers make no ions). The others are empty: hadronic
physics lists need the real ones. A marker file labels the set, so output files record `data: stand-in`.
Point `geant4.data_dir=<dir>` (or the G4*DATA variables) at the result. Takes about a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

from detsim.sim.geant4 import brems, photoabsorption
from detsim.sim.geant4.datasets import DATASETS, STANDIN_MARKER

Z_MAX = 100
SUFFIX = "-standin"


def build_standin(root: str | Path) -> dict[str, str]:
    """Write the stand-in under `root` (idempotent) and return the G4*DATA variables pointing at it."""
    root = Path(root)
    env = {}
    for var, prefix in DATASETS.items():
        folder = root / f"{prefix}{SUFFIX}"
        folder.mkdir(parents=True, exist_ok=True)
        env[var] = str(folder)
    # the ion table reads the nuclide list at initialisation; EM physics makes no ions, so an empty list does
    (Path(env["G4ENSDFSTATEDATA"]) / "ENSDFSTATE.dat").touch()
    emlow = Path(env["G4LEDATA"])
    if (emlow / STANDIN_MARKER).is_file():
        return env
    brem_dir = emlow / "brem_SB"
    phot_dir = emlow / "epics2017" / "phot"
    brem_dir.mkdir(exist_ok=True)
    phot_dir.mkdir(parents=True, exist_ok=True)
    for z in range(1, Z_MAX + 1):
        (brem_dir / f"br{z}").write_text(brems.format_sb(*brems.sb_table(z)))
        (phot_dir / f"pe-cs-{z}.dat").write_text(photoabsorption.format_cs(z))
        params = photoabsorption.format_params(z)
        (phot_dir / f"pe-high-{z}.dat").write_text(params)
        (phot_dir / f"pe-low-{z}.dat").write_text(params)
    (emlow / STANDIN_MARKER).write_text(
        "detsim stand-in G4EMLOW: screened Bethe-Heitler (Tsai) brem_SB tables and a one-shell photoelectric\n"
        "parametrisation; EM option1/option4 physics only. Not Geant4's evaluated data. See docs/geant4.md.\n"
    )
    return env


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m detsim.sim.geant4.standin <dir>", file=sys.stderr)
        return 2
    env = build_standin(args[0])
    print(f"# stand-in Geant4 data in {args[0]}; use geant4.data_dir={args[0]} or:")
    for var, folder in env.items():
        print(f"export {var}={folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
