"""G2Net pipeline: synthesise -> train -> evaluate, one MLflow parent run with a child run per stage.

    python pipelines/g2net.py --n 2000 --seed 1 --out outputs/g2net [--experiment g2net_1dcnn]
        [--train-override trainer.max_epochs=5 ...] [--tracking-uri sqlite:///mlflow.db] [--bank grid]
The evaluate stage scores the held-out test split with the trained CNN (best checkpoint), the
true-template and the template-bank matched filters (conf/gw/bank/<--bank>: the default stochastic bank takes
~5 min to place on 2 cores, the grid seconds), and logs AUCs overall and per SNR bin, the table (CSV), the bank
size and the ROC and efficiency plots.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from detsim.cli.signals import stopped_by_signals
from detsim.cli.train import train
from detsim.gw.report import efficiency_figure, format_table, roc_figure, snr_binned_table
from detsim.gw.matched_filter import baseline_scores
from detsim.metrics.roc import roc_auc
from detsim.paths import config_dir
from detsim.security import load_checkpoint
from detsim.gw.synth import synthesise
from detsim.tracking import flatten_config, resolve_tracking_uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="outputs/g2net")
    ap.add_argument("--experiment", default="g2net_1dcnn")
    ap.add_argument("--train-override", nargs="*", default=[])
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bank", default="default", help="conf/gw/bank/<name>: default (stochastic) or grid")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    uri = resolve_tracking_uri(args.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("detsim")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        sim_cfg = compose("simulate", overrides=["simulator=gw", f"n={args.n}", f"seed={args.seed}", f"out={out}/data"])
        train_cfg = compose("train", overrides=[f"experiment={args.experiment}", f"data.path={out}/data",
                                                f"data.whitener_out={out}/whitener.npz", f"paths.output_dir={out}/train",
                                                f"logger.tracking_uri={uri}", f"seed={args.seed}", *args.train_override])
    bank_path = config_dir() / "gw" / "bank" / f"{args.bank}.yaml"
    if not bank_path.is_file():
        raise SystemExit(f"no bank config {bank_path}; choose one of {sorted(p.stem for p in bank_path.parent.glob('*.yaml'))}")
    bank_cfg = OmegaConf.load(bank_path)

    with mlflow.start_run(run_name=f"g2net_pipeline_{args.experiment}") as parent:
        with mlflow.start_run(run_name="simulate", nested=True):
            mlflow.log_params(flatten_config(sim_cfg))
            t0 = time.perf_counter()
            synthesise(sim_cfg.simulator, n=args.n, seed=args.seed, out=f"{out}/data",
                       workers=int(sim_cfg.simulator.workers))
            mlflow.log_metric("samples_per_s", args.n / (time.perf_counter() - t0))

        os.environ["DETSIM_PARENT_RUN_ID"] = parent.info.run_id       # the train app's run becomes a child
        try:
            train(train_cfg)
        finally:
            os.environ.pop("DETSIM_PARENT_RUN_ID", None)

        with mlflow.start_run(run_name="evaluate", nested=True):
            dm = instantiate(train_cfg.data)
            dm.setup()
            model = instantiate(train_cfg.model)
            best = sorted((out / "train" / "checkpoints").glob("epoch*.ckpt"))
            ckpt = best[-1] if best else out / "train" / "checkpoints" / "last.ckpt"
            model.load_state_dict(load_checkpoint(ckpt)["state_dict"])
            model.eval().to(args.device)
            with torch.no_grad():
                cnn = np.concatenate([model(b["x"].to(args.device)).cpu().numpy() for b in dm.test_dataloader()])
            raw = dm.raw("test")
            scores = {"cnn": cnn, **baseline_scores(raw, f"{out}/data/{sim_cfg.simulator.injections_file}",
                                                    dm.whitener, sim_cfg.simulator, bank_cfg, args.device)}
            rows = snr_binned_table(scores, raw["target"], raw["snr"], list(train_cfg.model.snr_bins),
                                    float(train_cfg.model.false_alarm))
            print(format_table(rows))
            bank_key = next(k for k in scores if k.startswith("mf_bank"))
            mlflow.log_params({"checkpoint": str(ckpt), "n_test": len(raw["ids"]), "bank": args.bank,
                               "bank_templates": int(bank_key[7:]), **{f"bank/{k}": v for k, v in bank_cfg.items()}})
            mlflow.log_metrics({f"auc_{k}": roc_auc(raw["target"], v) for k, v in scores.items()})
            with tempfile.TemporaryDirectory() as tmp:
                table = Path(tmp) / "auc_by_snr.csv"
                with table.open("w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
                mlflow.log_artifact(str(table))
            mlflow.log_figure(roc_figure(scores, raw["target"]), "plots/roc.png")
            mlflow.log_figure(efficiency_figure(rows, float(train_cfg.model.false_alarm)), "plots/efficiency_vs_snr.png")


if __name__ == "__main__":
    with stopped_by_signals():  # SIGTERM/SIGINT: synthesis workers end too, exit 128 + signal
        main()
