"""Classifier two-sample test: can a network tell generated showers from reference ones?

A binary classifier (MLP or shower CNN, `conf/eval/classifier/*.yaml`) is trained with Lightning on
a train split, the epoch with the best validation score is kept (`best_epoch_by`: the challenge keeps
the highest accuracy, not the lowest loss: an over-confident network's cross-entropy rises while its
ranking of the showers still improves), an isotonic map fitted on the validation split calibrates
its outputs, and the held-out test split gives the ROC AUC (0.5: the samples are indistinguishable)
and the JSD estimated from the calibrated cross-entropy, as in the CaloChallenge 2022 evaluation.
The same training function serves particle identification.

Progress: one log line per epoch (`logging`, so batch and SLURM logs get it) with the train loss, the
validation AUC and the elapsed time; a dataset-2 evaluation trains for minutes without other output.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from detsim.errors import ConfigError, DetsimError
from detsim.metrics.isotonic import IsotonicCalibrator
from detsim.data.splits import stratified_split
from detsim.learn.binary import BinaryClassifierModule
from detsim.metrics.roc import RocCurve, binary_cross_entropy, jsd_from_bce, roc_auc

log = logging.getLogger(__name__)


class Standardize(nn.Module):
    """(x - mean) / std with statistics of the training split, carried by the model as buffers.

    An affine map changes nothing the classifier can learn, only how fast Adam gets there: inputs
    like voxel fractions (mostly ~0) next to log10 E_inc (~3-6) otherwise need many epochs.
    """

    def __init__(self, x: np.ndarray, min_std: float = 1e-6):
        super().__init__()
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        std[std < min_std] = 1.0  # a constant input (an always-empty voxel) passes through centred
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BinaryClassifier(BinaryClassifierModule):
    """A backbone producing one logit per row of (x, y) batches, trained with BCE and Adam; logs `train/loss` per
    epoch, `val/loss`, `val/acc` and `val/auc` (`detsim.learn.binary`)."""

    train_loss_on_step, train_loss_on_epoch = False, True
    log_accuracy = True

    def __init__(self, backbone: nn.Module, lr: float = 2e-4, weight_decay: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.lr = lr
        self.weight_decay = weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def batch_logits(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        return self(batch[0])

    def batch_labels(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return batch[1]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


# best_epoch_by -> (logged metric, whether larger is better)
BEST_EPOCH_METRICS: dict[str, tuple[str, bool]] = {"loss": ("val/loss", False), "accuracy": ("val/acc", True)}


def best_epoch_metric(cfg: Mapping[str, Any]) -> tuple[str, bool]:
    """The validation metric (and its direction) that `cfg.best_epoch_by` names."""
    key = str(cfg.get("best_epoch_by", "loss"))
    if key not in BEST_EPOCH_METRICS:
        raise ConfigError(f"best_epoch_by: expected one of {sorted(BEST_EPOCH_METRICS)}, found {key!r}")
    return BEST_EPOCH_METRICS[key]


class KeepBestEpoch(L.Callback):
    """Remembers the weights of the epoch with the best validation `monitor` (the first of equals) and
    restores them at the end (in memory: an evaluation should not litter checkpoint files)."""

    def __init__(self, monitor: str = "val/loss", maximize: bool = False) -> None:
        self.monitor = monitor
        self.sign = -1.0 if maximize else 1.0  # compares sign * value: lower is better
        self.best_value = float("inf")
        self.best_epoch = -1
        self.history: list[dict[str, float]] = []  # per epoch: every logged validation metric
        self._state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self.history.append({k: float(v) for k, v in metrics.items() if k.startswith("val/")})
        value = metrics.get(self.monitor)
        if value is None:
            return
        if self.sign * float(value) < self.best_value:
            self.best_value = self.sign * float(value)
            self.best_epoch = trainer.current_epoch
            self._state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)


# logged metric -> its name in the progress line
EPOCH_LINE_KEYS = {"train/loss": "train loss", "val/loss": "val loss", "val/acc": "val acc", "val/auc": "val AUC"}


class EpochLog(L.Callback):
    """One line per epoch through `logging`, e.g. `low-level: epoch 3/50  train loss 0.6812  val loss 0.6790
    val acc 0.5610  val AUC 0.5850 (kept: epoch 2)  41 s` (epochs counted from 1, val AUC before calibration).

    Logging, not print: Hydra's job log and batch logs keep it, and a terminal shows it beside Lightning's bar."""

    def __init__(self, label: str, keep: "KeepBestEpoch") -> None:
        self.label, self.keep = label, keep
        self._start = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{text} {float(metrics[key]):.4f}" for key, text in EPOCH_LINE_KEYS.items() if key in metrics)
        kept = f" (kept: epoch {self.keep.best_epoch + 1})" if self.keep.best_epoch >= 0 else ""
        last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("%s: epoch %d/%s  %s%s  %.0f s", self.label, trainer.current_epoch + 1, last, shown, kept,
                 time.perf_counter() - self._start)


@dataclass
class FitOutput:
    """Scores (probabilities) on the validation and test parts of a trained classifier."""

    val_labels: np.ndarray
    val_scores: np.ndarray
    test_labels: np.ndarray
    test_scores: np.ndarray
    best_epoch: int
    model: BinaryClassifier
    history: list[dict[str, float]] = field(default_factory=list)  # validation metrics per epoch


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    data = TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None)


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    model.eval()
    out = [
        torch.sigmoid(model(torch.as_tensor(x[i : i + batch_size], dtype=torch.float32))).numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def fit_classifier(
    make_backbone: Callable[[int], nn.Module], x: np.ndarray, labels: np.ndarray, cfg: Mapping[str, Any], seed: int,
    label: str = "classifier",
) -> FitOutput:
    """Train `make_backbone(n_features)` on a stratified split of (x, labels) following `cfg` (a
    conf/eval/classifier entry).

    The backbone is built after seeding, so its initial weights, like the split and the batch order, follow
    `seed`: built before, they followed whatever had drawn from torch's global generator until then, and
    `make run`'s low-level AUC moved by up to 0.05 between identical evaluations.

    `cfg.num_threads` pins torch's intra-op threads for the fit: on a shared, oversubscribed CPU two
    spinning threads make small networks many times slower than one. `label` names the fit in the
    per-epoch progress lines.
    """
    threads = cfg.get("num_threads")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _fit(make_backbone, x, labels, cfg, seed, label)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(make_backbone: Callable[[int], nn.Module], x: np.ndarray, labels: np.ndarray, cfg: Mapping[str, Any],
         seed: int, label: str) -> FitOutput:
    L.seed_everything(seed, workers=True, verbose=False)
    backbone = make_backbone(x.shape[1])
    split = stratified_split(labels, tuple(cfg.get("split", (0.6, 0.2, 0.2))), np.random.default_rng(seed))
    if cfg.get("standardize", False):
        backbone = nn.Sequential(Standardize(x[split.train]), backbone)
    model = BinaryClassifier(backbone, lr=float(cfg.get("lr", 2e-4)), weight_decay=float(cfg.get("weight_decay", 0.0)))
    monitor, maximize = best_epoch_metric(cfg)
    keep = KeepBestEpoch(monitor, maximize)
    callbacks: list[L.Callback] = [keep, EpochLog(label, keep)]
    patience = cfg.get("early_stopping_patience")
    if patience:
        callbacks.append(L.callbacks.EarlyStopping(monitor, patience=int(patience), mode="max" if maximize else "min"))
    trainer = L.Trainer(
        max_epochs=int(cfg.get("max_epochs", 50)),
        accelerator=str(cfg.get("accelerator", "cpu")),
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=bool(cfg.get("enable_progress_bar", True)) and sys.stdout.isatty(),  # no bar in logs
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    batch = int(cfg.get("batch_size", 1000))
    trainer.fit(
        model,
        _loader(x[split.train], labels[split.train], batch, True, seed),
        _loader(x[split.val], labels[split.val], max(batch, 4096), False, seed),
    )
    model = model.cpu()
    return FitOutput(
        labels[split.val],
        predict_proba(model, x[split.val]),
        labels[split.test],
        predict_proba(model, x[split.test]),
        keep.best_epoch,
        model,
        keep.history,
    )


@dataclass
class TwoSampleResult:
    """Test-split metrics of one classifier two-sample test."""

    auc: float  # after isotonic calibration (the challenge's reported number)
    auc_raw: float  # before calibration
    jsd: float  # from the calibrated BCE, in bits (0..1)
    bce: float
    best_epoch: int
    n_test: int
    roc: RocCurve = field(repr=False)

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {
            f"auc_{prefix}": self.auc,
            f"auc_{prefix}_raw": self.auc_raw,
            f"jsd_{prefix}": self.jsd,
            f"bce_{prefix}": self.bce,
            f"best_epoch_{prefix}": float(self.best_epoch),
            f"n_test_{prefix}": float(self.n_test),
        }


def two_sample_test(
    reference: np.ndarray,
    generated: np.ndarray,
    make_backbone: Callable[[int], nn.Module],
    cfg: Mapping[str, Any],
    seed: int,
    label: str = "classifier",
) -> TwoSampleResult:
    """Train a classifier to separate `generated` (label 1) from `reference` (label 0) input rows.

    The larger sample is cut to the size of the smaller one (first rows kept): the JSD estimate
    from the cross-entropy assumes balanced classes. `make_backbone(input_dim)` builds the network; `label`
    names it in the per-epoch progress lines.
    """
    for name, rows in (("reference", reference), ("generated", generated)):
        bad = int(np.size(rows) - np.isfinite(rows).sum())
        if bad:  # a diverged generator must not score AUC 0.5 ("indistinguishable")
            raise DetsimError(f"two-sample test: the {name} inputs hold {bad} NaN/Inf values; expected finite showers")
    n = min(len(reference), len(generated))
    if n < 10:
        raise ConfigError(f"the two-sample test needs at least 10 showers per sample, got {n}")
    x = np.concatenate([reference[:n], generated[:n]]).astype(np.float32)
    y = np.r_[np.zeros(n), np.ones(n)].astype(np.float32)
    fit = fit_classifier(make_backbone, x, y, cfg, seed, label)
    calibrator = IsotonicCalibrator.fit(fit.val_scores, fit.val_labels)
    calibrated = calibrator.predict(fit.test_scores)
    bce = binary_cross_entropy(fit.test_labels, calibrated)
    return TwoSampleResult(
        auc=roc_auc(fit.test_labels, calibrated),
        auc_raw=roc_auc(fit.test_labels, fit.test_scores),
        jsd=jsd_from_bce(bce),
        bce=bce,
        best_epoch=fit.best_epoch,
        n_test=len(fit.test_labels),
        roc=RocCurve.from_scores(fit.test_labels, calibrated).downsample(),
    )
