"""GW benchmark: synthesise -> train a CNN -> compare its test AUC with the matched filter's.

Self-contained, one command (also on a GPU machine with the project installed):
    python benchmarks/bench_gw.py --n 24000 --epochs 10 --device cuda --workers 16
Prints synthesis samples/s per core, training samples/s, and ROC AUCs (overall and in SNR bins) of the
CNN, the true-template matched filter (the bound) and the template-bank matched filter, on one test set.
On a GPU machine without pycbc use the G2Net study instead (studies/README.md): `python -m studies.gw.injections` here,
`python -m studies.gw.cnn_vs_matched_filter` there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="samples synthesised (train+val+test)")
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--model", default="gw_1dcnn", help="gw_1dcnn | gw_cqt")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="synthesis processes")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bank", default="default", help="conf/gw/bank/<name>")
    ap.add_argument("--bank-override", nargs="*", default=[], help="e.g. n_chirp_mass=10")
    ap.add_argument("--out", default="outputs/bench_gw")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import lightning.pytorch as L

    from detsim.gw.report import format_table, snr_binned_table
    from detsim.gw.matched_filter import baseline_scores
    from detsim.metrics.roc import roc_auc
    from detsim.paths import config_dir
    from detsim.gw.synth import synthesise

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        sim = compose("simulate", overrides=["simulator=gw"]).simulator
        cfg = compose("train", overrides=[f"experiment=g2net_{args.model.removeprefix('gw_')}",
                                          f"data.data_dir={args.out}/data", f"data.batch_size={args.batch_size}",
                                          f"data.test_fraction={args.test_fraction}", f"seed={args.seed}"])
    from omegaconf import OmegaConf

    bank_cfg = OmegaConf.merge(OmegaConf.load(config_dir() / "gw" / "bank" / f"{args.bank}.yaml"),
                               OmegaConf.from_dotlist(args.bank_override))
    data_dir = Path(args.out) / "data"
    if not (data_dir / "training_labels.csv").is_file():
        import pycbc.waveform  # noqa: F401  (import cost kept out of the timing)

        t0 = time.perf_counter()
        synthesise(sim, n=args.n, seed=args.seed, out=data_dir, workers=args.workers)
        dt = time.perf_counter() - t0
        print(f"synthesis: {args.n} samples in {dt:.1f} s with {args.workers} processes = "
              f"{args.n / dt / args.workers:.1f} samples/s per core ({args.n / dt:.1f} total); target >= 30")

    L.seed_everything(args.seed, workers=True)
    dm = instantiate(cfg.data)
    dm.setup()
    model = instantiate(cfg.model)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.device, devices=1, logger=False,
                        enable_checkpointing=False, default_root_dir=args.out)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    dt = time.perf_counter() - t0
    n_train = len(dm.splits["train"])
    print(f"training: {n_train} samples x {args.epochs} epochs in {dt:.1f} s = {n_train * args.epochs / dt:.1f} "
          f"samples/s on {args.device} ({torch.get_num_threads()} threads), incl. validation")

    model.eval().to(args.device)
    scores = []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            scores.append(model(batch["x"].to(args.device)).float().cpu().numpy())
    raw = dm.raw("test")
    t0 = time.perf_counter()
    all_scores = {"cnn": np.concatenate(scores),
                  **baseline_scores(raw, str(data_dir / sim.injections_file), dm.whitener, sim, bank_cfg, args.device)}
    print(f"matched filter: {time.perf_counter() - t0:.1f} s for {len(raw['ids'])} test samples")
    rows = snr_binned_table(all_scores, raw["target"], raw["snr"], list(cfg.model.snr_bins), cfg.model.false_alarm)
    print(format_table(rows))
    auc = {k: roc_auc(raw["target"], v) for k, v in all_scores.items()}
    print(f"test set {len(raw['ids'])} samples, trained on {n_train}: "
          + ", ".join(f"{k} AUC {v:.4f}" for k, v in auc.items())
          + f"; CNN - true-template MF = {auc['cnn'] - auc['mf_true']:+.4f} (target >= -0.02)")


if __name__ == "__main__":
    main()
