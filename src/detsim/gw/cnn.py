"""CNN classifiers for gravitational-wave detection in 3-detector strain (H1, L1, V1).

`GW1DCNN`: a convolutional branch per detector on whitened strain (H1 and L1 share one branch: the two
LIGO detectors are nearly co-aligned and equally sensitive, so weight sharing halves what must be learnt),
a joint convolutional head and GeM pooling. `GW2DCNN`: a constant-Q front end and a small 2D CNN.
`GWClassifier`: the LightningModule on detsim's binary-classifier base (`detsim.learn.binary`: BCE, scores,
`val/auc`, `test/auc`), with augmentations from config, optional test-time averaging over the same
symmetries, and test plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from detsim.errors import ConfigError
from detsim.gw.report import efficiency_figure, roc_figure, snr_binned_table
from detsim.gw.whiten import CQTFrontEnd
from detsim.learn.attached import attached_trainer
from detsim.learn.binary import BinaryClassifierModule
from detsim.metrics.plots import save_figure


class GeM(nn.Module):
    """Generalised-mean pooling over the last dims: p=1 is average, p->inf is max; p is learnt."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        return x.clamp_min(self.eps).pow(self.p).mean(dim=dims).pow(1.0 / self.p)


def _conv1d_stack(channels: Sequence[int], kernels: Sequence[int], pools: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out, k, pool in zip(channels[:-1], channels[1:], kernels, pools):
        layers += [nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(c_out), nn.SiLU()]
        if pool > 1:
            layers.append(nn.MaxPool1d(pool))
    return nn.Sequential(*layers)


class GW1DCNN(nn.Module):
    """(B, 3, n) whitened strain -> (B,) logits."""

    def __init__(self, branch_channels: Sequence[int] = (1, 16, 32), branch_kernels: Sequence[int] = (15, 7),
                 branch_pools: Sequence[int] = (4, 4), head_channels: Sequence[int] = (64, 128, 128, 256, 256),
                 head_kernels: Sequence[int] = (7, 7, 7, 7, 7), head_pools: Sequence[int] = (2, 2, 2, 2, 1),
                 gem_p: float = 3.0, hidden: int = 64, dropout: float = 0.2,
                 input_mask: Sequence[float] | None = None) -> None:
        super().__init__()
        if input_mask is not None and len(input_mask) != 3:
            raise ConfigError(f"model.net.input_mask: expected one weight per detector (H1, L1, V1), found {list(input_mask)}")
        # [1, 1, 0]: a two-detector (H1, L1) network, V1 zeroed in training and in a search (not a weight: checkpoints
        # without it load unchanged)
        self.register_buffer("input_mask", None if input_mask is None else torch.tensor([float(m) for m in input_mask]),
                             persistent=False)
        if not len(branch_channels) - 1 == len(branch_kernels) == len(branch_pools):
            raise ConfigError(f"model.net: branch_channels (with the input's 1) needs one more entry than branch_kernels "
                              f"and branch_pools; found {list(branch_channels)}, {list(branch_kernels)}, {list(branch_pools)}")
        if not len(head_channels) == len(head_kernels) == len(head_pools):
            raise ConfigError(f"model.net: head_channels, head_kernels and head_pools need one entry per layer; found "
                              f"{list(head_channels)}, {list(head_kernels)}, {list(head_pools)}")
        self.ligo = _conv1d_stack(branch_channels, branch_kernels, branch_pools)
        self.virgo = _conv1d_stack(branch_channels, branch_kernels, branch_pools)
        self.head = _conv1d_stack([3 * branch_channels[-1], *head_channels], head_kernels, head_pools)
        self.pool = GeM(gem_p)
        self.classifier = nn.Sequential(nn.Linear(head_channels[-1], hidden), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.input_mask is not None:
            x = x * self.input_mask.to(x.dtype)[None, :, None]
        ligo = self.ligo(x[:, :2].reshape(2 * b, 1, -1))              # H1 and L1 through the same weights
        ligo = ligo.reshape(b, 2, *ligo.shape[1:]).flatten(1, 2)
        features = torch.cat([ligo, self.virgo(x[:, 2:3])], dim=1)
        return self.classifier(self.pool(self.head(features))).squeeze(-1)


class GW2DCNN(nn.Module):
    """(B, 3, n) whitened strain -> CQT images (B, 3, bins, frames) -> 2D CNN -> (B,) logits."""

    def __init__(self, cqt: Mapping[str, Any] | None = None, channels: Sequence[int] = (3, 32, 64, 128),
                 pools: Sequence[int] = (2, 2, 1), gem_p: float = 3.0, dropout: float = 0.2) -> None:
        super().__init__()
        self.front = CQTFrontEnd(**dict(cqt or {}))
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0])]
        for c_in, c_out, pool in zip(channels[:-1], channels[1:], pools):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()]
            if pool > 1:
                layers.append(nn.MaxPool2d(pool))
        self.body = nn.Sequential(*layers)
        self.pool = GeM(gem_p)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.body(self.front(x)))).squeeze(-1)


def ligo_swapped(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, n) H1, L1, V1 -> L1, H1, V1: the two LIGO detectors exchanged."""
    return x[:, [1, 0, 2]]


def augment(x: torch.Tensor, swap_ligo: float = 0.0, sign_flip: float = 0.0, time_shift: int = 0) -> torch.Tensor:
    """Label-preserving transforms of a batch: swap H1<->L1, flip the sign of all detectors (a polarisation
    rotation), roll all detectors by the same random shift (keeps inter-detector delays)."""
    b = x.shape[0]
    if swap_ligo > 0:
        swap = torch.rand(b, device=x.device) < swap_ligo
        x = torch.where(swap[:, None, None], ligo_swapped(x), x)
    if sign_flip > 0:
        x = x * torch.where(torch.rand(b, device=x.device) < sign_flip, -1.0, 1.0)[:, None, None]
    if time_shift > 0:
        shifts = torch.randint(-time_shift, time_shift + 1, (b,), device=x.device)
        idx = (torch.arange(x.shape[-1], device=x.device)[None] - shifts[:, None]) % x.shape[-1]
        x = torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))
    return x


def view_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(4, B) logits of the four label-preserving views of a batch: as is, H1<->L1, h -> -h, both."""
    swapped = ligo_swapped(x)
    return torch.stack([net(view) for view in (x, swapped, -x, -swapped)])


def symmetric_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean logit over the four label-preserving views of a batch (`view_logits`): test-time augmentation
    with the training augmentations' symmetries, 4x the inference cost."""
    return view_logits(net, x).mean(0)


class GWClassifier(BinaryClassifierModule):
    """Signal vs noise on whitened strain (`detsim.learn.binary`); logs train/loss (per step and epoch), val/loss,
    val/auc, test/auc and the test plots roc.png and efficiency_vs_snr.png."""

    train_loss_on_step, train_loss_on_epoch = True, True

    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4,
                 augmentation: Mapping[str, Any] | None = None, snr_bins: Sequence[float] = (0, 6, 8, 10, 12, 20),
                 false_alarm: float = 0.01, example_length: int = 2048, test_time_augmentation: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.augmentation = dict(augmentation or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def batch_logits(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Training: a randomly augmented batch; validation and test: the batch as is, or the mean over its four
        symmetric views with `test_time_augmentation`."""
        if stage == "train":
            return self(augment(batch["x"], **self.augmentation))
        return symmetric_logits(self.net, batch["x"]) if self.hparams.test_time_augmentation else self(batch["x"])

    def batch_labels(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return batch["y"]

    def batch_extras(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"snr": batch["snr"], "index": batch["index"]}

    def write_test_plots(self, outputs: Mapping[str, np.ndarray], folder: Path) -> None:
        """The ROC curve and, when every sample has a known SNR, the efficiency at `false_alarm` per SNR bin."""
        scores, labels = {"cnn": outputs["score"]}, outputs["label"]
        save_figure(roc_figure(scores, labels), folder / "roc.png", close=True, dpi=110, bbox_inches="tight")
        if np.isfinite(outputs["snr"]).all():
            rows = snr_binned_table(scores, labels, outputs["snr"], self.hparams.snr_bins, self.hparams.false_alarm)
            save_figure(efficiency_figure(rows, self.hparams.false_alarm), folder / "efficiency_vs_snr.png", close=True,
                        dpi=110, bbox_inches="tight")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        trainer = attached_trainer(self)
        epochs = max(int(trainer.max_epochs or 1), 1) if trainer is not None else 1
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def mlflow_model(self) -> tuple[nn.Module, np.ndarray]:
        """The plain network (whitened (B, 3, n) -> logits) and an input example, for mlflow.pytorch."""
        return self.net, np.zeros((1, 3, self.hparams.example_length), dtype=np.float32)
