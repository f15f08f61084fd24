"""Refit a trained dataset-2 VAE's energy map with other settings, on the same decoder (a post-hoc study).

    python -m studies.calo.refit_energy_map CKPT --train g4_train.h5 --n 32000 --set spill=cell --out refit.ckpt

Why: an energy-map option (e.g. `spill`) changes only what happens after the decoder, so its effect is measured on
one trained decoder rather than across trainings, whose seed-to-seed spread is as large as the effect. The map is
fitted as training fits it (`CaloVAE.fit_energy_map`: generated showers with the map off, the voxel map on, onto the
group energies of training showers), then `detsim-generate` and `detsim-evaluate` judge the written checkpoint.
Used for docs/studies/2026-12-07-physics-fidelity.md.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import h5py
import torch
import yaml

from detsim.security import load_checkpoint
from detsim.models.vae import CaloVAE


def refit(ckpt: Path, train: Path, n: int, settings: dict[str, object], out: Path) -> None:
    checkpoint = load_checkpoint(ckpt, map_location="cpu")
    hparams = copy.deepcopy(checkpoint["hyper_parameters"])
    hparams["energy_map"] = {**hparams["energy_map"], **settings}
    model = CaloVAE(**hparams)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    with h5py.File(train, "r") as f:
        e_inc = torch.as_tensor(f["incident_energies"][:n].reshape(-1), dtype=torch.float32)
        showers = torch.as_tensor(f["showers"][:n], dtype=torch.float32)
    groups = model.generator.energy_map.group_energies(showers)
    del showers
    model.fit_energy_map(e_inc, groups)
    checkpoint["hyper_parameters"] = hparams
    checkpoint["state_dict"] = model.state_dict()
    torch.save(checkpoint, out)
    print(f"{out}: energy map refitted on {len(e_inc)} showers of {train} with {settings}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("--train", type=Path, required=True, help="CaloChallenge-layout HDF5 of training showers")
    ap.add_argument("--n", type=int, default=32000, help="the first n showers of --train are the reference")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="energy_map setting (YAML value)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    settings = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_grad_enabled(False)
    refit(args.ckpt, args.train, args.n, settings, args.out)


if __name__ == "__main__":
    main()
