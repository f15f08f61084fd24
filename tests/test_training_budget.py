"""The budget schedule: the learning rate ends its cosine at the budget, whichever of epochs or time runs out first."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import Timer

from detsim.training.budget import BudgetCosineSchedule


class ClockTimer(Timer):
    """A Timer whose elapsed and remaining seconds are set by the test."""

    def __init__(self, elapsed: float, remaining: float) -> None:
        super().__init__(duration="00:00:01:00")
        self._elapsed_s, self._remaining_s = elapsed, remaining

    def time_elapsed(self, stage="train") -> float:
        return self._elapsed_s

    def time_remaining(self, stage="train") -> float:
        return self._remaining_s


def trainer(step: int, total: float, timer: Timer | None = None, lr: float = 1e-3) -> SimpleNamespace:
    optimizer = SimpleNamespace(param_groups=[{"lr": lr, "initial_lr": lr}])
    return SimpleNamespace(global_step=step, estimated_stepping_batches=total,
                           callbacks=[timer] if timer is not None else [], optimizers=[optimizer])


def test_the_rate_falls_from_the_start_to_the_final_ratio_along_a_cosine():
    schedule = BudgetCosineSchedule(final_lr_ratio=0.02)
    values = [schedule.factor(p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.02)
    assert values[2] == pytest.approx(0.51)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_progress_is_the_larger_of_steps_and_time():
    schedule = BudgetCosineSchedule()
    assert schedule.budget_progress(trainer(100, 1000)) == pytest.approx(0.1)  # epochs only
    assert schedule.budget_progress(trainer(100, math.inf, ClockTimer(45.0, 15.0))) == pytest.approx(0.75)  # time only
    assert schedule.budget_progress(trainer(900, 1000, ClockTimer(45.0, 15.0))) == pytest.approx(0.9)  # steps ahead


def test_the_optimiser_follows_the_time_budget():
    schedule = BudgetCosineSchedule(final_lr_ratio=0.0)
    t = trainer(10, math.inf, ClockTimer(60.0, 0.0))  # the time is up: the end of the cosine
    schedule.on_train_start(t, None)
    schedule.on_train_batch_start(t, None, None, 0)
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    t.callbacks[0]._elapsed_s, t.callbacks[0]._remaining_s = 0.0, 60.0
    schedule.on_train_batch_start(t, None, None, 1)
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="final_lr_ratio"):
        BudgetCosineSchedule(final_lr_ratio=1.5)
