"""Train metrics at every epoch end, whatever the epoch's length.

Lightning writes step metrics every `trainer.log_every_n_steps` steps, and the CaloVAE computes its
loss terms only on those steps (each `self.log` costs time). An epoch shorter than that interval (a small
data set, a quick study) then leaves no `train/*` terms at all. This callback makes the last step of each
epoch a logging step, so every epoch ends with all train terms logged, at no cost on the other steps.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as L


class LogTrainMetricsAtEpochEnd(L.Callback):
    """Set `log_every_n_steps` to 1 for the epoch's last batch, restore it when the epoch ends."""

    def __init__(self) -> None:
        self._saved: int | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        n_batches = trainer.num_training_batches
        if self._saved is None and math.isfinite(n_batches) and batch_idx == int(n_batches) - 1:
            self._saved = trainer.log_every_n_steps
            trainer.log_every_n_steps = 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the step metrics of the last batch are written before this hook: restore only now
        if self._saved is not None:
            trainer.log_every_n_steps, self._saved = self._saved, None
