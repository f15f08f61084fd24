"""One skeleton for detsim's binary classifiers: the two-sample test's (`detsim.eval.two_sample`), particle ID
(`detsim.models.pid`) and the G2Net CNN (`detsim.gw.cnn`).

A subclass says how a batch becomes logits and labels (and which other per-row values to keep); the base
trains with BCE on the logits, collects the validation and test scores of each epoch and logs their AUC, and
puts the test plots a subclass draws into the run of the Trainer's logger (`detsim.learn.artifacts`).
Every metric is named `<stage>/<name>`: `train/loss`, `val/loss`, `val/auc`, `test/auc` (`val/acc`, `test/acc`
where `log_accuracy` is set). A score is a logit: > 0 votes "label 1".
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn

from detsim.learn.artifacts import log_artifact, mlflow_logger
from detsim.metrics.roc import roc_auc


class BinaryClassifierModule(L.LightningModule):
    """Label 1 against label 0, one logit per row: BCE, per-epoch score collection, `val/auc` and `test/auc`.

    Subclasses implement `batch_logits` and `batch_labels`; they may add `batch_extras` (per-row values kept with
    the scores, e.g. the SNR of a GW sample), `test_metrics` and `write_test_plots`. `test_outputs` holds the
    last test epoch's collected arrays (`score`, `label` and the extras).
    """

    train_loss_on_step = True    # `train/loss` per step, per epoch or both (then `train/loss_step`, `train/loss_epoch`)
    train_loss_on_epoch = False
    log_accuracy = False         # also `val/acc` and `test/acc`: the fraction of rows on the right side of logit 0

    def __init__(self) -> None:
        super().__init__()
        self.loss_fn = nn.BCEWithLogitsLoss()
        self._outputs: dict[str, list[torch.Tensor]] = {}
        self.test_outputs: dict[str, np.ndarray] | None = None

    # --- what a subclass says -------------------------------------------------------------------------------

    def batch_logits(self, batch: Any, stage: str) -> torch.Tensor:
        """(B,) logits of a batch; `stage` is train, val or test (augment in training, average views in test...)."""
        raise NotImplementedError

    def batch_labels(self, batch: Any) -> torch.Tensor:
        """(B,) float labels, 1 or 0."""
        raise NotImplementedError

    def batch_extras(self, batch: Any) -> Mapping[str, torch.Tensor]:
        """Per-row values collected beside the scores in validation and test (none by default)."""
        return {}

    def test_metrics(self, outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Metrics of the test epoch's collected arrays; `test/auc` by default."""
        return {"test/auc": roc_auc(outputs["label"], outputs["score"])}

    def write_test_plots(self, outputs: Mapping[str, np.ndarray], folder: Path) -> None:
        """Write the test epoch's PNGs into `folder`; they become the run's `plots/` (none by default). Called only
        when the Trainer has a logger that stores files."""

    # --- the skeleton ---------------------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        logits, labels = self.batch_logits(batch, "train"), self.batch_labels(batch)
        loss = self.loss_fn(logits, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=self.train_loss_on_step, on_epoch=self.train_loss_on_epoch,
                 batch_size=len(labels))
        return loss

    def _eval_step(self, stage: str, batch: Any) -> None:
        logits, labels = self.batch_logits(batch, stage), self.batch_labels(batch)
        self.log(f"{stage}/loss", self.loss_fn(logits, labels), prog_bar=True, batch_size=len(labels))
        if self.log_accuracy:
            accuracy = ((logits > 0).float() == labels).float().mean()
            self.log(f"{stage}/acc", accuracy, prog_bar=True, batch_size=len(labels))
        for key, value in {"score": logits, "label": labels, **self.batch_extras(batch)}.items():
            self._outputs.setdefault(key, []).append(value.detach().float().cpu())  # float: bf16 has no numpy type

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def collected(self) -> dict[str, np.ndarray] | None:
        """The epoch's collected arrays on this process (and the collection emptied), or None when a class is
        missing (no AUC is defined then)."""
        out = {key: torch.cat(parts).numpy() for key, parts in self._outputs.items()}
        self._outputs = {}
        if not out or not 0 < out["label"].sum() < len(out["label"]):
            return None
        return out

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def on_validation_epoch_end(self) -> None:
        """The epoch's validation AUC (observing only: it draws no random numbers and picks nothing)."""
        out = self.collected()
        if out is not None:
            self.log("val/auc", roc_auc(out["label"], out["score"]), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def on_test_epoch_end(self) -> None:
        out = self.collected()
        if out is None:
            return
        self.test_outputs = out
        for name, value in self.test_metrics(out).items():
            self.log(name, value)
        if mlflow_logger(self.trainer) is not None:
            with tempfile.TemporaryDirectory() as tmp:
                self.write_test_plots(out, Path(tmp))
                if any(Path(tmp).iterdir()):
                    log_artifact(self.trainer, tmp, "plots")
