"""Fault injection for the resume test: a real SIGKILL from inside training at a chosen optimiser step."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning.pytorch as L


class KillAtStep(L.Callback):
    """`kill -9` this process once `trainer.global_step` reaches `step` (no cleanup, no final checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
