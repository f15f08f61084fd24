"""CNN classifiers for gravitational-wave detection in 3-detector strain (H1, L1, V1).

`GW1DCNN`: a convolutional branch per detector on whitened strain (H1 and L1 share one branch: the two
LIGO detectors are nearly co-aligned and equally sensitive, so weight sharing halves what must be learnt),
a joint convolutional head and GeM pooling. `GW2DCNN`: a constant-Q front end and a small 2D CNN.
`GWClassifier`: the LightningModule (BCE loss, augmentations from config, optional test-time averaging over
the same symmetries, `val/auc`, test plots).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn

from detsim.gw.whiten import CQTFrontEnd
from detsim.errors import ConfigError


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
                 gem_p: float = 3.0, hidden: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
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


class GWClassifier(L.LightningModule):
    """Signal vs noise on whitened strain; logs train/loss, val/loss, val/auc, test/auc and test plots."""

    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4,
                 augmentation: Mapping[str, Any] | None = None, snr_bins: Sequence[float] = (0, 6, 8, 10, 12, 20),
                 false_alarm: float = 0.01, example_length: int = 2048, test_time_augmentation: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.augmentation = dict(augmentation or {})
        self.loss_fn = nn.BCEWithLogitsLoss()
        self._outputs: dict[str, list[torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = augment(batch["x"], **self.augmentation)
        loss = self.loss_fn(self(x), batch["y"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def _eval_step(self, stage: str, batch: Mapping[str, torch.Tensor]) -> None:
        logits = symmetric_logits(self.net, batch["x"]) if self.hparams.test_time_augmentation else self(batch["x"])
        self.log(f"{stage}/loss", self.loss_fn(logits, batch["y"]), prog_bar=True, batch_size=len(logits))
        for key, value in (("score", logits), ("y", batch["y"]), ("snr", batch["snr"]), ("index", batch["index"])):
            self._outputs.setdefault(key, []).append(value.detach().float().cpu())   # float: bf16 has no numpy type

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _collect(self) -> dict[str, np.ndarray]:
        out = {k: torch.cat(v).numpy() for k, v in self._outputs.items()}
        self._outputs = {}
        return out

    def on_validation_epoch_end(self) -> None:
        from detsim.metrics.roc import roc_auc

        out = self._collect()
        if out and 0 < out["y"].sum() < len(out["y"]):
            self.log("val/auc", roc_auc(out["y"], out["score"]), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        from detsim.gw.report import efficiency_figure, roc_figure, snr_binned_table
        from detsim.metrics.roc import roc_auc
        from detsim.tracking import log_figure

        out = self._collect()
        if not out or not 0 < out["y"].sum() < len(out["y"]):
            return
        self.log("test/auc", roc_auc(out["y"], out["score"]))
        self.test_predictions = out
        scores = {"cnn": out["score"]}
        log_figure(self.trainer, roc_figure(scores, out["y"]), "roc.png")
        if np.isfinite(out["snr"]).all():
            rows = snr_binned_table(scores, out["y"], out["snr"], self.hparams.snr_bins, self.hparams.false_alarm)
            log_figure(self.trainer, efficiency_figure(rows, self.hparams.false_alarm), "efficiency_vs_snr.png")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        epochs = max(int(self.trainer.max_epochs or 1), 1) if self._trainer is not None else 1
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def mlflow_model(self) -> tuple[nn.Module, np.ndarray]:
        """The plain network (whitened (B, 3, n) -> logits) and an input example, for mlflow.pytorch."""
        return self.net, np.zeros((1, 3, self.hparams.example_length), dtype=np.float32)
