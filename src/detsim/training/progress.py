"""One plain line per epoch for batch logs, where a live progress bar would be redrawn into a mess of lines.

`detsim-train` uses it instead of the rich bar when standard output is not a terminal (SLURM logs, pipelines).
"""

from __future__ import annotations

import time

import lightning.pytorch as L


class EpochLines(L.Callback):
    """`epoch 3/60  train/loss 1193.5  val/loss 1070.3  12.3 s` after each validation epoch."""

    def __init__(self, keys: tuple[str, ...] = ("train/loss", "val/loss")) -> None:
        self.keys = keys
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{k} {float(metrics[k]):.5g}" for k in self.keys if k in metrics)
        last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(f"epoch {trainer.current_epoch + 1}/{last}  {shown}  {time.perf_counter() - self._start:.1f} s", flush=True)
