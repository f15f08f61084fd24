"""A Lightning callback that shows, while training runs, how generated showers compare with the data.

Every `every_n_epochs` validation epochs and once at the end of fitting it generates showers for the
incident energies of (up to `max_showers`) validation showers and writes, generated vs reference:
E_tot/E_inc and energy per layer (detsim.eval's feature histograms with ratio panel and separation
power), mean longitudinal and radial profiles, and shower images (mean and single showers per layer).
PNGs go to `<default_root_dir>/validation_plots/<tag>/` and, through the Trainer's MLflow logger, into its run as
artifacts (`detsim.learn.artifacts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from detsim.eval.features import ShowerFeatures  # noqa: E402
from detsim.metrics.plots import STYLE, feature_histogram  # noqa: E402
from detsim.metrics.separation import compare_features  # noqa: E402
from detsim.geometry import Geometry, RadialLayer  # noqa: E402
from detsim.models.vae import unpack_batch  # noqa: E402
from detsim.showers import CaloShowers  # noqa: E402
from detsim.learn.artifacts import log_artifact  # noqa: E402

LABELS = ("reference", "generated")


def collect_showers(loader: Any, max_showers: int) -> CaloShowers:
    """Up to `max_showers` showers from a DataLoader of raw-MeV batches."""
    parts: list[CaloShowers] = []
    n = 0
    for batch in loader:
        e, s = unpack_batch(batch)
        parts.append(CaloShowers(e.cpu().numpy(), s.cpu().numpy()))
        n += len(e)
        if n >= max_showers:
            break
    return CaloShowers.concatenate(parts)[:max_showers]


def validation_showers(trainer: L.Trainer, max_showers: int) -> CaloShowers:
    """Up to `max_showers` showers of the trainer's (first) validation loader."""
    loaders = trainer.val_dataloaders
    return collect_showers(loaders[0] if isinstance(loaders, (list, tuple)) else loaders, max_showers)


def generate_like(pl_module: L.LightningModule, reference: CaloShowers, seed: int) -> CaloShowers:
    """Showers generated (eval mode, seeded) for the incident energies of `reference`: what it is compared with."""
    rng = torch.Generator(device=pl_module.device).manual_seed(seed)
    was_training = pl_module.training
    pl_module.eval()
    showers = pl_module.sample(torch.as_tensor(reference.incident_energy), rng).cpu().numpy()
    pl_module.train(was_training)
    return CaloShowers(reference.incident_energy, showers)


def plot_feature_histograms(geometry: Geometry, ref: CaloShowers, gen: CaloShowers, out: Path, n_bins: int,
                            threshold: float, dpi: int) -> list[Path]:
    """E_tot/E_inc and energy per layer, with detsim.eval's binning and plot."""
    feats = ShowerFeatures(geometry, threshold)
    names = ["etot_einc"] + [f"e_layer_{lid}" for lid in geometry.layer_ids]
    f_ref, f_gen = feats(ref), feats(gen)
    comparisons = compare_features({k: f_ref[k] for k in names}, {k: f_gen[k] for k in names}, n_bins,
                                   log_names=set(names[1:]), quantiles=(0.001, 0.999))
    labels = {s.name: s.label for s in feats.specs}
    return [feature_histogram(c, out / f"{name}.png", labels[name], LABELS, dpi) for name, c in comparisons.items()]


def _mean_per_e_inc(showers: CaloShowers) -> np.ndarray:
    return (showers.showers / showers.incident_energy[:, None]).mean(axis=0)


def plot_profiles(geometry: Geometry, ref: CaloShowers, gen: CaloShowers, out: Path, dpi: int) -> Path:
    """Mean energy per layer (longitudinal) and per radial bin in each layer (radial), / E_inc."""
    means = [_mean_per_e_inc(ref), _mean_per_e_inc(gen)]
    r_centre = geometry.cell_centres_polar[0]
    with plt.style.context(STYLE):
        fig, axes = plt.subplots(1, 1 + geometry.n_layers, figsize=(4.2 * (1 + geometry.n_layers), 4.2))
        x = np.arange(geometry.n_layers + 1)
        for mean, label, style in zip(means, LABELS, ("fill", "step")):
            layers = np.add.reduceat(mean, geometry.layer_offsets[:-1])
            hep.histplot(layers, x - 0.5, ax=axes[0], histtype=style, label=label, alpha=0.5 if style == "fill" else 1)
        axes[0].set_xticks(x[:-1], [str(i) for i in geometry.layer_ids])
        axes[0].set_xlabel("layer id")
        axes[0].set_ylabel(r"$\langle E_{layer} \rangle / E_{inc}$")
        axes[0].set_yscale("log")
        axes[0].legend(fontsize="small")
        for ax, sl, layer in zip(axes[1:], geometry.layer_slices, geometry.layers):
            r = np.round(r_centre[sl], 6)
            radii = np.unique(r)
            for mean, label in zip(means, LABELS):
                per_r = np.array([mean[sl][r == v].sum() for v in radii])
                ax.step(radii, per_r, where="mid", label=label)
            ax.set_yscale("log")
            ax.set_xlabel("r [mm]" if isinstance(layer, RadialLayer) else "distance to axis [mm]")
            ax.set_title(f"layer {layer.id}", fontsize="small")
        fig.tight_layout()
        path = out / "profiles.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
    return path


def _draw_layer(ax: Any, layer: Any, values: np.ndarray, vmin: float, vmax: float) -> Any:
    norm = matplotlib.colors.LogNorm(vmin=vmin, vmax=vmax)
    image = np.where(values > 0, values, np.nan).reshape(layer.shape)
    if isinstance(layer, RadialLayer):  # (alpha, r-bin) cells on polar axes; rings equally wide for legibility
        alpha_edges = layer.alpha_edges()
        if layer.n_alpha == 1:  # a full ring: split it so the polar mesh has non-degenerate cells
            alpha_edges, image = np.linspace(-np.pi, np.pi, 37), np.repeat(image, 36, axis=0)
        return ax.pcolormesh(alpha_edges, np.arange(layer.n_r + 1), image.T, norm=norm, cmap="viridis")
    return ax.imshow(image, norm=norm, cmap="viridis", origin="lower")


def plot_images(geometry: Geometry, ref: CaloShowers, gen: CaloShowers, out: Path, n_single: int, dpi: int) -> Path:
    """Rows: mean reference, mean generated, then `n_single` single reference/generated showers; columns: layers."""
    rows = [("mean reference", _mean_per_e_inc(ref)), ("mean generated", _mean_per_e_inc(gen))]
    for i in range(min(n_single, len(ref), len(gen))):
        rows += [(f"reference #{i}", ref.showers[i] / ref.incident_energy[i]),
                 (f"generated #{i}", gen.showers[i] / gen.incident_energy[i])]
    positive = np.concatenate([v[v > 0] for _, v in rows] or [np.ones(1)])
    vmin, vmax = np.quantile(positive, 0.01), positive.max()
    polar = [isinstance(layer, RadialLayer) for layer in geometry.layers]
    fig = plt.figure(figsize=(2.6 * geometry.n_layers, 2.6 * len(rows)))
    mappable = None
    for i, (title, values) in enumerate(rows):
        for j, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices)):
            ax = fig.add_subplot(len(rows), geometry.n_layers, i * geometry.n_layers + j + 1,
                                 projection="polar" if polar[j] else None)
            mappable = _draw_layer(ax, layer, values[sl], vmin, vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}, layer {layer.id}", fontsize=7)
    fig.colorbar(mappable, ax=fig.axes, shrink=0.6, label=r"$E_{voxel}/E_{inc}$")
    path = out / "shower_images.png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


class ValidationPlots(L.Callback):
    """Generated-vs-reference plots every `every_n_epochs` epochs and at the end of fitting."""

    def __init__(self, every_n_epochs: int = 5, max_showers: int = 10_000, n_bins: int = 40, n_single: int = 2,
                 seed: int = 0, dpi: int = 90) -> None:
        self.every_n_epochs = int(every_n_epochs)
        self.max_showers = int(max_showers)
        self.n_bins, self.n_single, self.seed, self.dpi = int(n_bins), int(n_single), int(seed), int(dpi)
        self._reference: CaloShowers | None = None
        self._last: tuple[int, Path] | None = None  # (global step, folder) of the latest plots
        self.written: list[Path] = []

    def _reference_showers(self, trainer: L.Trainer) -> CaloShowers:
        if self._reference is None:
            self._reference = validation_showers(trainer, self.max_showers)
        return self._reference

    def make_plots(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str) -> list[Path]:
        """Generate, draw, save under the run folder and log to MLflow; return the PNG paths."""
        ref = self._reference_showers(trainer)
        gen = generate_like(pl_module, ref, self.seed)
        out = Path(trainer.default_root_dir) / "validation_plots" / tag
        out.mkdir(parents=True, exist_ok=True)
        geometry: Geometry = pl_module.geometry
        paths = plot_feature_histograms(geometry, ref, gen, out, self.n_bins, pl_module.threshold, self.dpi)
        paths.append(plot_profiles(geometry, ref, gen, out, self.dpi))
        paths.append(plot_images(geometry, ref, gen, out, self.n_single, self.dpi))
        log_artifact(trainer, out, f"validation_plots/{tag}")
        self._last = (trainer.global_step, out)
        self.written += paths
        return paths

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or self.every_n_epochs <= 0 or epoch % self.every_n_epochs:
            return
        self.make_plots(trainer, pl_module, f"epoch{epoch:03d}")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.val_dataloaders is None:
            return
        if self._last is not None and self._last[0] == trainer.global_step:
            # the weights have not changed since the last plots: log those as the final ones
            log_artifact(trainer, self._last[1], "validation_plots/final")
            return
        self.make_plots(trainer, pl_module, "final")
