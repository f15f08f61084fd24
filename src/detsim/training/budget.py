"""A learning-rate schedule that follows the run's budget, whichever runs out first: epochs or wall-clock time.

Why: on a shared CPU a user gives a training an hour (`trainer.max_time`), not a number of epochs; a schedule
written in epochs then either never decays (the time runs out at epoch 12 of 40) or decays too early. This
callback sets, before every optimiser step, lr = lr_0 x (final + (1 - final) x (1 + cos(pi p)) / 2), where
p in [0, 1] is the larger of the step fraction (`trainer.estimated_stepping_batches`) and the time fraction
(Lightning's `Timer`, present when `trainer.max_time` is set), after a linear warm-up over `warmup` of p.
So an hour buys a full cosine schedule ending at the hour, and so do 15 minutes.
"""

from __future__ import annotations

import math
import time

import lightning.pytorch as L
from lightning.pytorch.callbacks import Timer


class BudgetCosineSchedule(L.Callback):
    """Cosine learning-rate decay over the budget's progress (epochs or `trainer.max_time`)."""

    def __init__(self, final_lr_ratio: float = 0.02, warmup: float = 0.0) -> None:
        if not 0.0 <= final_lr_ratio <= 1.0 or not 0.0 <= warmup < 1.0:
            raise ValueError(f"BudgetCosineSchedule: need 0 <= final_lr_ratio <= 1 and 0 <= warmup < 1, "
                             f"found {final_lr_ratio}, {warmup}")
        self.final_lr_ratio, self.warmup = float(final_lr_ratio), float(warmup)
        self._base: list[float] = []
        self._start = time.monotonic()
        self.progress = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._base = [group.get("initial_lr", group["lr"]) for opt in trainer.optimizers for group in opt.param_groups]
        self._start = time.monotonic()

    def budget_progress(self, trainer: L.Trainer) -> float:
        """Fraction of the budget used: the larger of steps done / steps planned and time used / max_time."""
        total = trainer.estimated_stepping_batches
        p = trainer.global_step / total if total and math.isfinite(total) and total > 0 else 0.0
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
        if timer is not None:
            elapsed, left = timer.time_elapsed("train"), timer.time_remaining("train")
            if left is not None and elapsed + left > 0:
                p = max(p, elapsed / (elapsed + left))
        return min(max(p, 0.0), 1.0)

    def factor(self, p: float) -> float:
        """lr / lr_0 at progress p."""
        if p < self.warmup:
            return (p + 1e-3) / (self.warmup + 1e-3)
        q = (p - self.warmup) / (1.0 - self.warmup)
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * q))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.progress = self.budget_progress(trainer)
        f = self.factor(self.progress)
        groups = [group for opt in trainer.optimizers for group in opt.param_groups]
        for group, base in zip(groups, self._base):
            group["lr"] = base * f
