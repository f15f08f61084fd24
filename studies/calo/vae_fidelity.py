"""Fidelity study of the CaloVAE options on dataset-1-like photons from the reference simulator.

For each variant (Hydra overrides of conf/model/calo_vae_atlas.yaml) it trains the VAE through a
Lightning Trainer on `--n-train` simulator showers, generates as many showers as a held-out simulator
sample holds (same incident energies), and reports the low-level classifier AUC of detsim.eval's
two-sample test (held-out simulator vs generated), E_tot/E_inc and hits per layer. A second
held-out simulator sample gives the AUC floor (simulator vs simulator, ~0.5).

    python -m studies.calo.vae_fidelity --device cuda --epochs 80 --jobs 7     # all variants in parallel
    python -m studies.calo.vae_fidelity --n-train 3000 --n-holdout 2000 --epochs 1 --variants atlas hurdle_fitted
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from detsim.paths import config_dir

GEOMETRY = "calochallenge_ds1_photons"
# name -> Hydra overrides of `model=calo_vae_atlas` (or of `model=calo_vae`, "_default": the shipped default)
HEAD, PRIOR = "model/vae/head@model.head=", "model/vae/prior@model.prior="
_LOGIT = ["model.preprocessing.mode=logit", "model.encoder.input_norm=true"]
_HURDLE = [HEAD + "hurdle_lognormal", *_LOGIT]
_FITTED = [*_HURDLE, PRIOR + "fitted"]
_WEIBULL = [HEAD + "hurdle_weibull", *_LOGIT, PRIOR + "fitted"]
_NO_ENERGY = ["model.loss.w_etot=0.0", "model.loss.w_layer=0.0"]
_WIDE = "model.decoder.hidden=[64,128,256,512]"
VARIANTS: dict[str, dict[str, Any]] = {
    "atlas": {"overrides": []},
    "atlas_logit": {"overrides": _LOGIT},
    "hurdle": {"overrides": _HURDLE},
    "hurdle_fitted": {"overrides": _FITTED},
    "hurdle_fitted_layers": {"overrides": [*_FITTED, "model.calibration=layers"]},
    "hurdle_fitted_kl0.1": {"overrides": [*_FITTED, "model.loss.w_kl=0.1"]},
    "hurdle_fitted_noenergy": {"overrides": [*_FITTED, *_NO_ENERGY]},
    "weibull_fitted": {"overrides": _WEIBULL},
    "weibull_fitted_layers": {"overrides": [*_WEIBULL, "model.calibration=layers"]},
    "weibull_fitted_plateau": {"overrides": [*_WEIBULL, "model.optimizer.plateau={factor:0.5,patience:5}"]},
    "weibull_fitted_wide": {"overrides": [*_WEIBULL, _WIDE]},
    "weibull_fitted_noenergy": {"overrides": [*_WEIBULL, *_NO_ENERGY]},
    # conf/model/calo_vae.yaml as shipped, and variations of it
    "default": {"_default": True, "overrides": []},
    "default_wide": {"_default": True, "overrides": [_WIDE]},
    "default_latent16": {"_default": True, "overrides": ["model.latent_dim=16"]},
    "default_bs512": {"_default": True, "overrides": [], "_batch_size": 512},
    "default_patience3": {"_default": True, "overrides": ["model.optimizer.plateau.patience=3"]},
    "default_aggregate": {"_default": True, "overrides": [PRIOR + "aggregate"]},
    "default_wide_aggregate": {"_default": True, "overrides": [PRIOR + "aggregate", _WIDE]},
    "default_120ep": {"_default": True, "overrides": [], "_epochs": 120},
}


class GpuBatches:
    """Shuffled in-memory batches of raw-MeV showers already on the training device."""

    def __init__(self, e: torch.Tensor, s: torch.Tensor, batch_size: int, shuffle: bool, seed: int):
        self.e, self.s, self.batch_size, self.shuffle = e, s, batch_size, shuffle
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.e) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.e), generator=self.g) if self.shuffle else torch.arange(len(self.e))
        order = order.to(self.e.device)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield {"incident_energy": self.e[idx], "showers": self.s[idx]}


def simulate(out: Path, n_train: int, n_holdout: int) -> None:
    from detsim.sim import quick_sample

    for name, n, seed in (("train", n_train, 1), ("holdout", n_holdout, 2), ("holdout2", n_holdout, 3)):
        path = out / f"{name}.npz"
        if not path.exists():
            s = quick_sample(geometry=GEOMETRY, particle="photon", n=n, seed=seed)
            np.savez(path, e=s.incident_energy, s=s.showers)


def load(out: Path, name: str):
    from detsim.showers import CaloShowers

    d = np.load(out / f"{name}.npz")
    return CaloShowers(d["e"], d["s"])


def threshold_mev() -> float:
    return float(OmegaConf.load(config_dir() / "detector" / "atlas_lar_pb.yaml").threshold_MeV)


def model_kwargs(name: str) -> dict[str, Any]:
    from detsim.config import model_kwargs as composed

    variant = VARIANTS[name]
    model = "calo_vae" if variant.get("_default") else "calo_vae_atlas"
    return composed([f"model={model}", f"geometry={GEOMETRY}", *variant["overrides"],
                     f"model.readout_threshold_mev={threshold_mev()}"])


def summary(showers, geometry) -> dict[str, Any]:
    r = showers.showers.sum(1) / showers.incident_energy
    hits = np.stack([(showers.showers[:, sl] > 0).sum(1) for sl in geometry.layer_slices], 1)
    out: dict[str, Any] = {"hits_per_layer": hits.mean(0).round(1).tolist()}
    for e in (256, 4096, 65536, 4194304):
        m = showers.incident_energy == e
        out[f"response_{e}"] = [round(float(r[m].mean()), 4), round(float(r[m].std()), 4)]
    return out


def auc_low(reference, generated, device: str, seed: int = 0, clf: dict[str, Any] | None = None) -> float:
    """Low-level two-sample AUC with detsim.eval (challenge MLP 3 x 2048 on GPU, 3 x 256 on CPU).

    `clf` overrides the classifier config last (e.g. {"backbone": {"hidden": 2048}, "max_epochs": 15}
    for the challenge width on CPU with fewer epochs)."""
    from hydra.utils import instantiate

    from detsim.eval.features import low_level_inputs
    from detsim.eval.suite import above_threshold
    from detsim.eval.two_sample import two_sample_test

    cfg = OmegaConf.load(config_dir() / "eval" / "classifier" / "mlp.yaml")
    small = {"backbone": {"hidden": 256}, "max_epochs": 10, "early_stopping_patience": 3}
    cfg = OmegaConf.merge(cfg, {"enable_progress_bar": False, "max_epochs": 30, "early_stopping_patience": 5,
                                "accelerator": "gpu" if device == "cuda" else "cpu"}, {} if device == "cuda" else small, clf or {})
    # as detsim-evaluate and the challenge's evaluate.py: both samples through the evaluation threshold (1 MeV, ds1)
    cut = float(OmegaConf.load(config_dir() / "evaluate.yaml").challenge_thresholds_mev.calochallenge_ds1_photons)
    x_ref = low_level_inputs(above_threshold(reference, cut), float(cfg.voxel_scale))
    x_gen = low_level_inputs(above_threshold(generated, cut), float(cfg.voxel_scale))
    res = two_sample_test(x_ref, x_gen, lambda d: instantiate(cfg.backbone, input_dim=d), cfg, seed)
    return round(float(res.auc), 4)


def run_variant(args: tuple) -> dict[str, Any]:
    name, out_dir, epochs, device, batch_size, seed, threads, clf, post_prior = args
    import lightning as L

    from detsim.models.vae import CaloVAE
    from detsim.showers import CaloShowers

    torch.set_num_threads(threads)
    out = Path(out_dir)
    L.seed_everything(seed, workers=True)
    train = load(out, "train")
    n_val = len(train) // 10
    e = torch.as_tensor(train.incident_energy, device=device)
    s = torch.as_tensor(train.showers, device=device)
    batch_size = VARIANTS[name].get("_batch_size", batch_size)
    epochs = VARIANTS[name].get("_epochs", epochs)
    train_dl = GpuBatches(e[n_val:], s[n_val:], batch_size, True, 1)
    val_dl = GpuBatches(e[:n_val], s[:n_val], 4096, False, 1)
    model = CaloVAE(**model_kwargs(name))
    trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device == "cuda" else "cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    t0 = time.time()
    trainer.fit(model, train_dl, val_dl)
    train_s = time.time() - t0
    model = model.to(device).eval()
    hold = load(out, "holdout")
    g = torch.Generator(device=device).manual_seed(1)
    gen = np.concatenate([
        model.sample(torch.as_tensor(hold.incident_energy[i : i + 10000], device=device), g).cpu().numpy()
        for i in range(0, len(hold), 10000)
    ])
    gen = CaloShowers(hold.incident_energy, gen)
    tag = name if seed == 1 else f"{name}@seed{seed}"
    result = {"variant": tag, "epochs": trainer.current_epoch, "train_s": round(train_s, 1), "val_loss": float(trainer.callback_metrics["val/loss"]),
              **summary(gen, model.geometry)}
    # a diverged model generates NaN, which the classifier cannot tell apart (AUC 0.5): report it instead
    result["auc_low"] = auc_low(hold, gen, device, clf=clf) if np.isfinite(gen.showers).all() else float("nan")
    print(json.dumps(result), flush=True)
    if post_prior:
        refit_prior(model, val_dl, post_prior)
        g = torch.Generator(device=device).manual_seed(1)
        gen = CaloShowers(hold.incident_energy, model.sample(torch.as_tensor(hold.incident_energy, device=device), g).cpu().numpy())
        post = {"variant": f"{tag}+prior_{post_prior}", **summary(gen, model.geometry),
                "auc_low": auc_low(hold, gen, device, clf=clf)}
        print(json.dumps(post), flush=True)
        result["post_prior"] = post
    return result


@torch.no_grad()
def refit_prior(model, val_dl, kind: str) -> None:
    """Swap the trained model's latent prior for another kind fitted to the validation posteriors."""
    from detsim.models.vae import AggregatePrior, FittedPrior, StandardPrior

    old = model.generator.prior
    cs, posts = [], []
    for batch in val_dl:
        _, c, post = model.loss_terms(batch["incident_energy"].float(), batch["showers"].float())
        cs.append(c), posts.append(post)
    c, post = torch.cat(cs), torch.cat(posts, dim=1)
    latent_dim, n_bins = post.shape[2], old.n_bins
    prior = {"standard": lambda: StandardPrior(latent_dim),
             "fitted": lambda: FittedPrior(latent_dim, n_bins=n_bins, min_count=50),
             "aggregate": lambda: AggregatePrior(latent_dim, n_bins=n_bins, bank_size=post.shape[1])}[kind]().to(c.device)
    prior.fit(c, post[0], post[1], post[2])
    model.generator.prior = prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--n-holdout", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--out", default="vae_fidelity")
    parser.add_argument("--seed", type=int, default=1, help="VAE training seed (run-to-run spread)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per variant")
    parser.add_argument("--clf-hidden", type=int, default=None, help="classifier width (challenge: 2048)")
    parser.add_argument("--clf-epochs", type=int, default=None, help="classifier max_epochs (challenge: 50)")
    parser.add_argument("--post-prior", default=None, help="also evaluate each trained model with this prior kind")
    parser.add_argument("--no-floor", action="store_true", help="skip the simulator-vs-simulator AUC")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    simulate(out, args.n_train, args.n_holdout)
    print(f"simulated in {time.time() - t0:.1f} s", flush=True)
    from detsim.geometry import load_geometry

    geometry = load_geometry(model_kwargs("atlas")["geometry"])
    hold, hold2 = load(out, "holdout"), load(out, "holdout2")
    floor = {"variant": "simulator_vs_simulator", **summary(hold2, geometry), "auc_low": None}
    print(json.dumps({"variant": "simulator", **summary(hold, geometry)}), flush=True)
    clf: dict[str, Any] = {"num_threads": args.threads}
    if args.clf_hidden:
        clf["backbone"] = {"hidden": args.clf_hidden}
    if args.clf_epochs:
        clf.update(max_epochs=args.clf_epochs, early_stopping_patience=None)
    jobs = [(v, str(out), args.epochs, args.device, args.batch_size, args.seed, args.threads, clf, args.post_prior)
            for v in args.variants]
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(args.jobs, len(jobs))) as pool:
        pending = pool.map_async(run_variant, jobs)
        floor["auc_low"] = None if args.no_floor else auc_low(hold, hold2, args.device, clf=clf)
        print(json.dumps(floor), flush=True)
        results = pending.get()
    results.append(floor)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"{'variant':28s} {'AUC low':>8s} {'E/Einc 4GeV':>14s} {'E/Einc 65GeV':>14s}  hits per layer")
    for r in results:
        if r["auc_low"] is None:
            continue
        print(f"{r['variant']:28s} {r['auc_low']:8.3f} {r['response_4096'][0]:7.3f}+-{r['response_4096'][1]:.3f}"
              f" {r['response_65536'][0]:7.3f}+-{r['response_65536'][1]:.3f}  {r['hits_per_layer']}")


if __name__ == "__main__":
    main()
