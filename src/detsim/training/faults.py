"""Fault tolerance for long training jobs: non-finite losses, SLURM preemption, exact resume.

Three jobs, each a small Lightning callback or factory the trainer/callback configs instantiate:
- `FiniteLossGuard` stops at the first NaN/Inf loss and names the step and the loss term, so a diverged
  run fails loudly instead of burning GPU hours on NaNs;
- `slurm_environment` + `PreemptionStop` make Lightning's SIGUSR1 handler (checkpoint, `scontrol requeue`)
  usable, and end the process cleanly afterwards, also where `scontrol` does not exist;
- `RNGStateCheckpoint` stores the RNG states in every checkpoint, so a resumed run draws the same shuffles
  and noise as an uninterrupted one (Lightning does not save them).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

from detsim.errors import ConfigError, DetsimError

log = logging.getLogger(__name__)


class NonFiniteLossError(DetsimError):
    """A loss term became NaN or Inf during training."""


class FiniteLossGuard(L.Callback):
    """Raise `NonFiniteLossError` at the first training step whose loss is not finite, naming the bad `<prefix>*` terms."""

    def __init__(self, prefix: str = "train/") -> None:
        self.prefix = prefix

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all()):
            return  # the cheap check every step; the logged terms are only read to name the culprit
        bad = {
            name: float(value.detach().float().mean())
            for name, value in trainer.callback_metrics.items()
            if name.startswith(self.prefix) and isinstance(value, torch.Tensor) and not torch.isfinite(value).all()
        }
        bad = bad or {"loss": float(loss.detach().float().mean())}
        terms = ", ".join(f"{name}={value}" for name, value in sorted(bad.items()))
        raise NonFiniteLossError(
            f"non-finite loss at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx}):"
            f" {terms}; lower the learning rate, clip gradients or check the input data"
        )


def slurm_environment(auto_requeue: bool = True, requeue_signal: str = "SIGUSR1") -> SLURMEnvironment:
    """Lightning's SLURMEnvironment with the requeue signal given by name (YAML cannot hold a `signal.Signals`)."""
    if "SLURM_JOB_ID" not in os.environ:
        raise ConfigError("trainer=slurm needs a SLURM job: SLURM_JOB_ID is not set (use trainer=default outside SLURM)")
    try:
        signum = signal.Signals[requeue_signal]
    except KeyError as exc:
        raise ConfigError(f"requeue_signal: expected a signal name like SIGUSR1, found {requeue_signal!r}") from exc
    return SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=signum)


class PreemptionStop(L.Callback):
    """On the preemption signal: checkpoint (and requeue under SLURM) at the next batch end, then stop cleanly.

    The signal handler only takes note; the work happens at the end of the current training batch, so the
    checkpoint and the MLflow calls never run in the middle of an optimiser step or a database write.
    Under `trainer=slurm` that work is Lightning's own handler: it writes `hpc_ckpt_<n>.ckpt` in the run
    folder and calls `scontrol requeue` (SLURM then kills and requeues the job). Without a SLURM environment
    this callback writes the same `hpc_ckpt_<n>.ckpt` itself. Either way the run then ends instead of
    training on, also where `scontrol` does not exist (a login node, a test).
    """

    def __init__(self, signal_name: str = "SIGUSR1") -> None:
        self.signum = signal.Signals[signal_name]
        self.received = False
        self.handled = False
        self.checkpoint: str | None = None
        self._lightning_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registers its SLURM handler after `on_fit_start` and restores the old ones at teardown.
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(self.signum)
        self._lightning_handler = previous if callable(previous) else None

        def note(signum: int, frame: Any) -> None:
            self.received = True

        signal.signal(self.signum, note)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.received or self.handled:
            return
        self.handled = True
        if self._lightning_handler is not None:
            self._lightning_handler(self.signum, None)
        else:
            trainer.save_checkpoint(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir),
                                    weights_only=False)
        trainer.should_stop = True
        self.checkpoint = _latest_hpc_checkpoint(trainer.default_root_dir)
        requeue = "SLURM requeue requested" if shutil.which("scontrol") else "scontrol not found, not requeued"
        log.warning(
            "%s received at step %d: checkpoint %s; %s. Resume with ckpt_path=auto in the same run folder.",
            self.signum.name, trainer.global_step, self.checkpoint, requeue,
        )


def preempted(trainer: L.Trainer) -> bool:
    """Whether a `PreemptionStop` of the Trainer ended the fit (the run resumes later; it is not finished)."""
    return any(isinstance(cb, PreemptionStop) and cb.handled for cb in trainer.callbacks)


def _latest_hpc_checkpoint(folder: str | os.PathLike) -> str | None:
    found = sorted(Path(folder).glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return str(found[-1]) if found else None


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain numbers only, so `torch.load(weights_only=True)` accepts them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


class RNGStateCheckpoint(L.Callback):
    """Save the RNG states (global torch/numpy/python and the train loader's own generator) in each checkpoint.

    Without them a resumed run reshuffles its data differently and its weights drift away from those of an
    uninterrupted run with the same seed. The states are put back in `on_train_start`, i.e. after the
    sanity-check validation, whose sampling (a VAE draws latent noise) would otherwise consume them.
    """

    KEY = "detsim_rng_states"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = _rng_state()
        generator = _train_generator(trainer)
        if generator is not None:
            state["train_loader"] = generator.get_state()
        checkpoint[self.KEY] = state

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        _set_rng_state(self._pending)
        generator = _train_generator(trainer)
        if generator is not None and "train_loader" in self._pending:
            generator.set_state(self._pending["train_loader"])
            # Lightning created this epoch's loader iterator before `on_train_start`, drawing its seed from the
            # unrestored generator; recreate it so it draws from the restored state, as the uninterrupted run did.
            fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
            if fetcher is not None:
                iter(fetcher)
        self._pending = None


def _train_generator(trainer: L.Trainer) -> torch.Generator | None:
    """The torch.Generator a shuffling train DataLoader draws its permutations from, if it has its own."""
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    generator = getattr(sampler, "generator", None) or getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None
