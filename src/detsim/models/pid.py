"""ParticleIdClassifier: the shower CNN as a LightningModule for `detsim-train` (photon/electron vs pion).

The backbone is any `conf/eval/classifier`-style backbone config (normally
`detsim.models.shower_cnn.build_shower_cnn`), built through `detsim.eval.suite.backbone_factory` as the
library function `detsim.eval.particle_id.train_particle_id` builds it; test metrics come from the same
`PidScore`. The model takes raw MeV batches and computes the low-level rows itself, so the network logged
to MLflow reads shower-file rows directly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn

from detsim.config import to_plain
from detsim.metrics.roc import PidScore, roc_auc, save_roc_plot
from detsim.models.shower_cnn import backbone_factory
from detsim.geometry import load_geometry
from detsim.security import check_targets


class LowLevelInputs(nn.Module):
    """[E_inc, voxels] in MeV -> [log10 E_inc, voxels / E_inc * scale]: `detsim.eval.features.low_level_inputs`
    in torch, so the logged model needs no numpy preprocessing."""

    def __init__(self, voxel_scale: float = 100.0) -> None:
        super().__init__()
        self.voxel_scale = float(voxel_scale)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        e_inc = raw[:, :1]
        return torch.cat([torch.log10(e_inc), raw[:, 1:] / e_inc * self.voxel_scale], dim=1)


class ParticleIdClassifier(L.LightningModule):
    """Signal (label 1) vs background showers with BCE; logs train/loss, val/loss, val/auc, test/auc,
    test/background_rejection_at_<pct> and test/background_efficiency_at_<pct>, and a ROC plot at test end.

    geometry: a geometry mapping (the composed `${geometry}`); backbone: a `_target_` config taking
    `geometry` (CNN) or `input_dim` (MLP); signal_efficiency: the working point of the rejection metric.
    """

    def __init__(
        self,
        geometry: Mapping[str, Any],
        backbone: Mapping[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        voxel_scale: float = 100.0,
        signal_efficiency: float = 0.9,
    ) -> None:
        super().__init__()
        geometry, backbone = to_plain(geometry), to_plain(backbone)
        # the backbone config may come from a checkpoint: only detsim's own classes are instantiated
        check_targets(backbone, type(self).__name__, "backbone")
        self.save_hyperparameters({"geometry": geometry, "backbone": backbone, "lr": lr, "weight_decay": weight_decay,
                                   "voxel_scale": voxel_scale, "signal_efficiency": signal_efficiency})
        self.geometry = load_geometry(geometry)
        self.inputs = LowLevelInputs(voxel_scale)
        self.backbone = backbone_factory(backbone, self.geometry)(1 + self.geometry.n_voxels)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self._outputs: dict[str, list[torch.Tensor]] = {}
        self.test_score: PidScore | None = None

    def forward(self, incident_energy: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Logits, > 0 for signal-like showers."""
        return self.backbone(self.inputs(torch.cat([incident_energy[:, None], showers], dim=1)))

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss_fn(self(batch["incident_energy"], batch["showers"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(batch["label"]))
        return loss

    def _eval_step(self, stage: str, batch: Mapping[str, torch.Tensor]) -> None:
        logits = self(batch["incident_energy"], batch["showers"])
        self.log(f"{stage}/loss", self.loss_fn(logits, batch["label"]), prog_bar=True, batch_size=len(logits))
        self._outputs.setdefault("score", []).append(logits.detach().cpu())
        self._outputs.setdefault("label", []).append(batch["label"].detach().cpu())

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _collect(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Labels and scores of the epoch (this process's share), or None when a class is missing."""
        out = {k: torch.cat(v).numpy() for k, v in self._outputs.items()}
        self._outputs = {}
        if not out or not 0 < out["label"].sum() < len(out["label"]):
            return None
        return out["label"], out["score"]

    def on_validation_epoch_end(self) -> None:
        collected = self._collect()
        if collected is not None:
            self.log("val/auc", roc_auc(*collected), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        collected = self._collect()
        if collected is None:
            return
        score = PidScore.from_scores(*collected, signal_efficiency=float(self.hparams.signal_efficiency))
        self.test_score = score
        pct = score.efficiency_pct
        self.log("test/auc", score.auc)
        self.log(f"test/background_rejection_at_{pct}", score.background_rejection)
        self.log(f"test/background_efficiency_at_{pct}", score.background_efficiency)
        self._log_roc_plot(score)

    def _log_roc_plot(self, score: PidScore) -> None:
        """The ROC plot goes to whatever experiment logger the Trainer has that stores files (MLflow's client
        API: `experiment.log_artifact(run_id, path, folder)`); a model never imports the tracking room."""
        logger = self.logger
        if self.trainer.global_rank != 0 or not hasattr(getattr(logger, "experiment", None), "log_artifact"):
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        labels = getattr(datamodule, "labels", ("signal", "background"))
        with tempfile.TemporaryDirectory() as tmp:
            logger.experiment.log_artifact(logger.run_id, str(save_roc_plot(score, Path(tmp) / "roc.png", labels)), "plots")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def mlflow_model(self) -> tuple[nn.Module, np.ndarray]:
        """Raw rows [E_inc, voxels...] (MeV, float32) -> signal probability, and a two-row input example."""
        example = np.zeros((2, 1 + self.geometry.n_voxels), dtype=np.float32)
        example[:, 0] = (1.0e4, 1.0e5)
        example[:, 1:] = example[:, :1] / self.geometry.n_voxels  # the energy spread evenly: a valid shower
        return nn.Sequential(self.inputs, self.backbone, nn.Sigmoid()), example
