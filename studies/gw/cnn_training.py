"""Training the G2Net study's 1D CNN: detsim's own `GWClassifier` fitted by a Lightning Trainer, on whitened strain
held in memory (on the GPU when there is one), for a wall-clock budget.

What the study adds to `detsim-train experiment=g2net_1dcnn`, as callbacks and a batch source rather than a loop
of its own:
- `TimeBudget`: the number of epochs is re-planned after every epoch to fit `--minutes` (`planned_epochs`); the
  learning rate stays at its peak through the first, timed epoch, then follows a cosine over the planned epochs,
  set before every step (`BudgetedGWClassifier` has no scheduler of its own);
- `BestWeights`: the weights of the best validation AUC are kept (in memory) and loaded at the end;
- `StrainBatches`: shuffled batches of tensors already on the device; with a noise pool (`--remix`) every batch
  pairs the whitened signals with noise drawn at random from the pool; `RedrawnSets` swaps in a re-drawn training
  set every N epochs (`--redraw`, `studies.gw.redraw.Redrawer`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning.pytorch as L
import numpy as np
import torch
from rich.progress import track

from detsim.gw.cnn import GW1DCNN, GWClassifier, view_logits

CLASSIFIER_KEYS = ("lr", "weight_decay", "augmentation", "snr_bins", "false_alarm", "example_length",
                   "test_time_augmentation")   # the GWClassifier arguments of conf/model/gw_1dcnn.yaml


def network_of(net_cfg: dict[str, Any]) -> GW1DCNN:
    """A GW1DCNN from a `net` config (the bundled model config with any `--net` overrides)."""
    return GW1DCNN(**{k: v for k, v in net_cfg.items() if k != "_target_"})


def initial_weights(run_dir: str | Path, net_cfg: dict[str, Any]) -> dict[str, Any]:
    """The weights of a finished run (RUN_DIR/gw_1dcnn.pt) for a network built from `net_cfg`: every weight of the
    run must fit it; the network may add layers, which then start from their initial values."""
    path = Path(run_dir) / "gw_1dcnn.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--init {run_dir}: no gw_1dcnn.pt there (the output folder of a "
                                "studies.gw.cnn_vs_matched_filter run)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = network_of(net_cfg).load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"--init {path}: weights {unexpected} have no place in the network of --net {net_cfg}")
    if missing:
        print(f"--init {path}: new parameters {missing} start from their initial values")
    return state


def planned_epochs(done: int, elapsed: float, budget: float, max_epochs: int) -> int:
    """Epochs that fit the time budget at the mean pace so far (re-planned after every epoch, so re-draws, slower
    validation or a busy machine cannot push the run past its budget by more than about one epoch)."""
    per_epoch = elapsed / max(done, 1)
    return int(max(done, min(max_epochs, done + max(budget - elapsed, 0.0) // max(per_epoch, 1e-9))))


class StrainBatches(torch.utils.data.IterableDataset):
    """Batches `{x, y, snr, index}` (the keys of detsim.gw.datamodule) of whitened strain kept on `device`.

    noise: whitened noise-only strain; then `x` holds the whitened *signals* (zeros for noise-only samples) and every
    batch adds a noise segment drawn at random from the pool, so the network never sees the same noise twice with
    the same signal (whitening is linear, so this is exactly a new sample of the same distribution)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, device: str, shuffle: bool = False,
                 seed: int = 0, noise: np.ndarray | None = None) -> None:
        super().__init__()
        self.device, self.batch_size, self.shuffle = device, int(batch_size), shuffle
        self.y = torch.as_tensor(y, dtype=torch.float32, device=device)
        self.snr = torch.zeros(len(y), device=device)
        self.noise = None if noise is None else torch.as_tensor(noise, device=device)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.replace(x)

    def replace(self, x: np.ndarray) -> None:
        """Train on another set of the same rows and labels from the next batch on (a re-draw)."""
        self.x = torch.as_tensor(x, device=self.device)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.y)
        order = (torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)).to(self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.x[idx]
            if self.noise is not None:
                x = x + self.noise[torch.randint(len(self.noise), (len(idx),), generator=self.generator).to(self.device)]
            yield {"x": x, "y": self.y[idx], "snr": self.snr[idx], "index": idx}


def _loader(batches: StrainBatches) -> torch.utils.data.DataLoader:
    """Batches come whole, already on the device. The loader's own generator keeps it from drawing its base seed
    from torch's global stream, which the augmentations draw from (so the global stream is the model's alone)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, generator=torch.Generator())


class BudgetedGWClassifier(GWClassifier):
    """`GWClassifier` whose learning rate `TimeBudget` sets before every step, instead of an epoch scheduler."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class TimeBudget(L.Callback):
    """Stop when the next epoch would not fit `minutes` (`planned_epochs`) and set the learning rate: the peak `lr`
    through the first (timed) epoch, then a cosine to zero over the epochs planned after it. Records the history."""

    def __init__(self, minutes: float, max_epochs: int, lr: float) -> None:
        self.budget, self.max_epochs, self.lr = minutes * 60.0, int(max_epochs), float(lr)
        self.planned = self.max_epochs
        self.history: list[dict[str, float]] = []
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        epoch, steps = trainer.current_epoch, int(trainer.num_training_batches)
        lr = self.lr
        if epoch > 0:   # cosine over the epochs after the timed first one
            frac = ((epoch - 1) * steps + batch_idx) / max((self.planned - 1) * steps, 1)
            lr = self.lr * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done, elapsed = trainer.current_epoch + 1, self.elapsed()
        self.planned = planned_epochs(done, elapsed, self.budget, self.max_epochs)
        metrics = trainer.callback_metrics
        self.history.append({"epoch": done, "loss": float(metrics["train/loss_epoch"]),
                             "val_auc": float(metrics.get("val/auc", float("nan"))), "seconds": elapsed})
        print(f"epoch {done}/{self.planned}: loss {self.history[-1]['loss']:.4f}, "
              f"val AUC {self.history[-1]['val_auc']:.4f} ({elapsed:.0f} s)", flush=True)
        if done >= self.planned:
            trainer.should_stop = True


class BestWeights(L.Callback):
    """Keep the network's weights of the best `val/auc` (in memory) and load them when the fit ends."""

    def __init__(self) -> None:
        self.auc, self.epoch, self.state = -1.0, 0, None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        auc = float(trainer.callback_metrics.get("val/auc", -1.0))
        if auc > self.auc:
            self.auc, self.epoch = auc, trainer.current_epoch + 1
            self.state = copy.deepcopy(pl_module.net.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.net.load_state_dict(self.state)


class RedrawnSets(L.Callback):
    """Before every `every`-th epoch after the first, train on the set `redraw(epoch)` returns (same rows, labels)."""

    def __init__(self, batches: StrainBatches, redraw: Callable[[int], np.ndarray], every: int) -> None:
        self.batches, self.redraw, self.every = batches, redraw, int(every)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > 0 and epoch % self.every == 0:
            self.batches.replace(self.redraw(epoch))


def trainer_for(device: str, max_epochs: int, precision: str, callbacks: list[L.Callback], progress: bool) -> L.Trainer:
    """A Trainer on one device with no logger and no checkpoint files (the run folder gets the best weights)."""
    accelerator, devices = ("gpu", [torch.device(device).index or 0]) if device.startswith("cuda") else ("cpu", 1)
    return L.Trainer(accelerator=accelerator, devices=devices, max_epochs=max_epochs, callbacks=callbacks,
                     precision="bf16-mixed" if precision == "bf16" else "32-true", logger=False,
                     enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
                     num_sanity_val_steps=0, default_root_dir=None)


def train_cnn(model_cfg: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
              y_val: np.ndarray, device: str, minutes: float, max_epochs: int, batch_size: int, seed: int,
              progress: bool = True, noise_pool: np.ndarray | None = None, precision: str = "32",
              redraw: Callable[[int], np.ndarray] | None = None, redraw_every: int = 0,
              init: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fit the model config's GW1DCNN (`GWClassifier` hyper-parameters from `model_cfg`) for `minutes`; returns the
    network with the weights of its best validation epoch, and the training record.

    init: weights of a finished run (`initial_weights`) to continue from; parameters the new network adds keep
    their initial values."""
    L.seed_everything(seed, workers=True, verbose=False)
    net = network_of(model_cfg["net"])
    if init is not None:
        net.load_state_dict(init, strict=False)
    model = BudgetedGWClassifier(net, **{k: model_cfg[k] for k in CLASSIFIER_KEYS if k in model_cfg})
    train = StrainBatches(x_train, y_train, batch_size, device, shuffle=True, seed=seed, noise=noise_pool)
    val = StrainBatches(x_val, y_val, 1024, device)
    budget, best = TimeBudget(minutes, max_epochs, float(model_cfg["lr"])), BestWeights()
    callbacks: list[L.Callback] = [budget, best]
    if redraw is not None and redraw_every > 0:
        callbacks.append(RedrawnSets(train, redraw, redraw_every))
    trainer = trainer_for(device, max_epochs, precision, callbacks, progress)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")   # the batches are on the device already
        warnings.filterwarnings("ignore", ".*IterableDataset. has .__len__. defined.*")   # one process: len is exact
        trainer.fit(model, _loader(train), _loader(val))
    seconds = budget.elapsed()
    epochs = len(budget.history)   # the network comes back on the CPU (Lightning's teardown): scoring wants `device`
    return model.net.to(device), {"epochs": epochs, "best_epoch": best.epoch, "best_val_auc": best.auc, "seconds": seconds,
                       "samples_per_s": epochs * len(y_train) / seconds, "history": budget.history}


def _autocast(device: str, precision: str) -> Any:
    """bf16 autocast (`--precision bf16`: 1.6x faster CNN inference and training on an AVX512-BF16 CPU) or a no-op."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def cnn_test_scores(net: torch.nn.Module, x: torch.Tensor, batch: int, precision: str = "32",
                    progress: str | None = None) -> dict[str, np.ndarray]:
    """`cnn` (one view) and `cnn_symmetric` (mean of the four symmetric views, `view_logits`) logits of x, from one
    pass over the views; `progress` names a progress bar (minutes for a large test set on a CPU)."""
    net.eval()
    one, mean = [], []
    with torch.no_grad(), _autocast(str(x.device), precision):
        for s in track(range(0, len(x), batch), description=progress or "", disable=progress is None):
            views = view_logits(net, x[s : s + batch]).float().cpu()
            one.append(views[0])
            mean.append(views.mean(0))
    return {"cnn": torch.cat(one).numpy(), "cnn_symmetric": torch.cat(mean).numpy()}
