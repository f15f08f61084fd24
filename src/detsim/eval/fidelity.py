"""A Lightning callback that scores, after every epoch, how close generated showers are to the validation showers,
so the checkpoint kept for generation is the one with the most faithful showers, not the lowest loss.

Why: the VAE's validation loss (reconstruction + KL) keeps falling while the generated showers stop improving or
get worse (docs/studies/2026-12-07-physics-fidelity.md), and the voxel and energy maps fitted after each epoch
are not part of the loss at all. The score is the mean separation power (the CaloChallenge's triangular
discriminator) of the high-level features, averaged per kind and then over the kinds (E_tot / E_inc, layer
energies, centres, widths, sparsity: so the one response feature weighs as much as the 90 widths), between
showers generated for the validation energies (prior, decoder, both maps, exactly what `detsim-generate` runs)
and the validation showers: 0 = the same histograms.

It runs at the end of the training epoch, after the model has fitted its maps in its validation hook, and logs
`val/fidelity`; a `ModelCheckpoint(monitor="val/fidelity", save_on_train_epoch_end=True)` keeps the best.
"""

from __future__ import annotations

import logging

import lightning.pytorch as L
import numpy as np

from detsim.eval.features import ShowerFeatures
from detsim.eval.validation_plots import generate_like, validation_showers
from detsim.metrics.separation import compare_features
from detsim.showers import CaloShowers

log = logging.getLogger(__name__)


def feature_separation(features: ShowerFeatures, reference: CaloShowers, generated: CaloShowers,
                       n_bins: int) -> dict[str, float]:
    """Separation power per high-level feature of generated vs reference showers (reference binning)."""
    f_ref, f_gen = features(reference), features(generated)
    comparisons = compare_features(f_ref, f_gen, n_bins, quantiles=(0.001, 0.999))
    return {name: float(c.separation_power) for name, c in comparisons.items()}


class FidelityScore(L.Callback):
    """Logs `val/fidelity` (kind-averaged feature separation power, lower is better) after each training epoch."""

    def __init__(self, max_showers: int = 2000, n_bins: int = 30, seed: int = 0) -> None:
        self.max_showers, self.n_bins, self.seed = int(max_showers), int(n_bins), int(seed)
        self._reference: CaloShowers | None = None
        self.history: list[tuple[int, float]] = []

    def _reference_showers(self, trainer: L.Trainer) -> CaloShowers:
        if self._reference is None:
            self._reference = validation_showers(trainer, self.max_showers)
        return self._reference

    def score(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        """Generate for the validation energies with a fixed seed and compare (the model's own threshold)."""
        ref = self._reference_showers(trainer)
        generated = generate_like(pl_module, ref, self.seed)
        features = ShowerFeatures(pl_module.geometry, pl_module.threshold)
        separation = feature_separation(features, ref, generated, self.n_bins)
        kinds: dict[str, list[float]] = {}
        for spec in features.specs:  # each kind counts once: E_tot / E_inc is one feature among ~300
            kinds.setdefault(spec.kind, []).append(separation[spec.name])
        return float(np.mean([np.mean(values) for values in kinds.values()]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.val_dataloaders is None or not trainer.enable_validation:
            return
        value = self.score(trainer, pl_module)
        self.history.append((trainer.current_epoch, value))
        pl_module.log("val/fidelity", value, on_step=False, on_epoch=True)
        if trainer.global_rank == 0:
            log.info("epoch %d: val/fidelity %.5f (mean separation power of the high-level features)",
                     trainer.current_epoch + 1, value)
