"""Stability matrix of the default VAE recipes (issue 16, point 1): recipes x seeds x precisions, few epochs each.

Every cell is a real `detsim-train` fit (`detsim.cli.train.train` on the composed config, no MLflow, no plots)
on a small shower file; a cell passes when the fit reaches its last epoch and every train/val loss it logged is
finite. A non-finite training loss stops the fit (`FiniteLossGuard` names step and term): the cell reads "no".

    python -m studies.calo.vae_geant4_stability --ds2 g4_ds2.h5 --ds3 g4_ds3.h5 --ds1 param_ds1_photons.h5
    python -m studies.calo.vae_geant4_stability --ds2 g4_ds2.h5 --recipes ds2 --seeds 1 --precisions 32-true

The dataset-1 photon recipe runs on whatever file `--ds1` names: the Geant4 backend has no ATLAS-like
geometry, so the study uses parametric showers there (`--ds1` made with `detsim-simulate` if it is missing).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch

# recipe -> (experiment, overrides that keep a CPU cell small)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "ds1_photons": ("calo_vae_ds1_photons", ["data.batch_size=64"]),
    "ds2": ("calo_vae_ds2", ["data.batch_size=64"]),
    "ds3": ("calo_vae_ds3", ["data.batch_size=16"]),
}
RESULTS: dict[str, Any] = {}


class RecordLosses(L.Callback):
    """Keeps the epochs run and the last epoch's train/val losses of the current fit in `RESULTS`."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train/loss", "val/loss")}
        RESULTS.update(epochs=trainer.current_epoch + 1, **metrics)
        RESULTS.setdefault("val_history", []).append(metrics.get("val/loss", float("nan")))
        bad = sorted(k for k, v in trainer.callback_metrics.items() if not torch.isfinite(v).all())
        if bad:  # the first epoch with a non-finite logged term, and which (per-layer terms counted, not listed)
            layers = [k for k in bad if re.fullmatch(r".*/layer_\d+", k)]
            names = [k for k in bad if k not in layers] + ([f"{len(layers)} val/layer_<i>"] if layers else [])
            RESULTS.setdefault("first_bad", f"epoch {trainer.current_epoch + 1}: " + ", ".join(names))


def run_cell(recipe: str, path: Path, seed: int, precision: str, epochs: int, max_showers: int,
             limit_train_batches: int, out: Path) -> dict[str, Any]:
    """One fit; returns the table row."""
    from detsim.cli.train import train
    from detsim.config import compose_config
    from detsim.errors import DetsimError

    experiment, extra = RECIPES[recipe]
    cfg = compose_config("train", [
        f"experiment={experiment}", f"data.path={path}", f"data.max_showers={max_showers}", f"seed={seed}",
        f"trainer.precision={precision}", f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu",
        f"+trainer.limit_train_batches={limit_train_batches}", "trainer.log_every_n_steps=1",
        "callbacks.early_stopping=null", "callbacks.lr_monitor=null", "callbacks.validation_plots=null", "callbacks.progress_bar=null",
        "+callbacks.record_losses._target_=__main__.RecordLosses", "~logger", "run_test=false",
        "trainer.enable_progress_bar=false", f"paths.output_dir={out}", *extra])
    RESULTS.clear()
    start = time.perf_counter()
    error = ""
    try:
        train(cfg)
    except DetsimError as exc:  # NonFiniteLossError: the cell failed, the matrix goes on
        error = str(exc).splitlines()[0][:120]
    wall = time.perf_counter() - start
    finite = not error and "first_bad" not in RESULTS and RESULTS.get("epochs") == epochs
    history = " ".join(f"{v:.3g}" for v in RESULTS.get("val_history", []))
    return {"recipe": recipe, "seed": seed, "precision": precision, "epochs": RESULTS.get("epochs", 0),
            "train_loss": RESULTS.get("train/loss", float("nan")), "val_loss": RESULTS.get("val/loss", float("nan")),
            "val_history": history, "wall_s": wall, "finite": "yes" if finite else "no",
            "error": error or RESULTS.get("first_bad", "")}


def ensure_parametric_ds1(path: Path, n: int) -> None:
    """Parametric dataset-1 photons (no ATLAS-like Geant4 geometry exists) if `path` is missing."""
    if path.exists():
        return
    subprocess.run([sys.executable, "-m", "detsim.cli.simulate", "geometry=calochallenge_ds1_photons", "particle=photon",
                    f"n={n}", "seed=1", f"out={path}", "progress=false", f"hydra.run.dir={path.parent}/sim_ds1"],
                   check=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ds1", type=Path, default=Path("param_ds1_photons_n300.h5"), help="dataset-1 photons (made if missing)")
    parser.add_argument("--ds2", type=Path, help="Geant4 dataset-2 electrons")
    parser.add_argument("--ds3", type=Path, help="Geant4 dataset-3 electrons")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-showers", type=int, default=300, help="first rows of each file (80 %% train)")
    parser.add_argument("--limit-train-batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the run folders (checkpoints: GBs for dataset 3) here; default: a temporary folder, removed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = {"ds1_photons": args.ds1, "ds2": args.ds2, "ds3": args.ds3}
    if "ds1_photons" in args.recipes:
        ensure_parametric_ds1(args.ds1, args.max_showers)
    scratch = None if args.out else tempfile.TemporaryDirectory(prefix="vae_stability_")
    root = args.out or Path(scratch.name)
    rows = []
    print("| recipe | data | seed | precision | epochs | last train loss | val loss per epoch | wall s | finite |")
    print("|---|---|---|---|---|---|---|---|---|")
    for recipe in args.recipes:
        if files[recipe] is None:
            raise SystemExit(f"--{recipe.split('_')[0]}: a shower file is needed for recipe {recipe}")
        for precision in args.precisions:
            for seed in args.seeds:
                row = run_cell(recipe, files[recipe], seed, precision, args.epochs, args.max_showers,
                               args.limit_train_batches, root / f"{recipe}_{precision}_s{seed}")
                row["data"] = files[recipe].name
                rows.append(row)
                print(f"| {recipe} | {row['data']} | {seed} | {precision} | {row['epochs']} | {row['train_loss']:.1f} |"
                      f" {row['val_history']} | {row['wall_s']:.0f} | {row['finite']} {row['error']} |", flush=True)
    if scratch is not None:
        scratch.cleanup()
    return rows


if __name__ == "__main__":
    main()
