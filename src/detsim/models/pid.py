"""ParticleIdClassifier: the shower CNN as a LightningModule for `detsim-train` (photon/electron vs pion).

The backbone is any `conf/eval/classifier`-style backbone config (normally
`detsim.models.shower_cnn.build_shower_cnn`), built through `detsim.models.shower_cnn.backbone_factory` as the
library function `detsim.eval.particle_id.train_particle_id` builds it; test metrics come from the same
`PidScore`. The model takes raw MeV batches and computes the low-level rows itself, so the network logged
to MLflow reads shower-file rows directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from detsim.config import to_plain
from detsim.geometry import load_geometry
from detsim.learn.binary import BinaryClassifierModule
from detsim.metrics.plots import save_roc_plot
from detsim.metrics.roc import PidScore
from detsim.models.shower_cnn import backbone_factory
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


class ParticleIdClassifier(BinaryClassifierModule):
    """Signal (label 1) vs background showers with BCE (`detsim.learn.binary`); logs train/loss, val/loss,
    val/auc, test/auc, test/background_rejection_at_<pct> and test/background_efficiency_at_<pct>, and a ROC plot
    at test end.

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
        self.test_score: PidScore | None = None

    def forward(self, incident_energy: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Logits, > 0 for signal-like showers."""
        return self.backbone(self.inputs(torch.cat([incident_energy[:, None], showers], dim=1)))

    def batch_logits(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        return self(batch["incident_energy"], batch["showers"])

    def batch_labels(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return batch["label"]

    def test_metrics(self, outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """AUC, background rejection and efficiency at the signal efficiency (`PidScore`, kept as `test_score`)."""
        score = PidScore.from_scores(outputs["label"], outputs["score"],
                                     signal_efficiency=float(self.hparams.signal_efficiency))
        self.test_score = score
        pct = score.efficiency_pct
        return {"test/auc": score.auc, f"test/background_rejection_at_{pct}": score.background_rejection,
                f"test/background_efficiency_at_{pct}": score.background_efficiency}

    def write_test_plots(self, outputs: Mapping[str, np.ndarray], folder: Path) -> None:
        """roc.png, with the particle names of the datamodule (signal, background without one)."""
        labels = getattr(getattr(self.trainer, "datamodule", None), "labels", ("signal", "background"))
        save_roc_plot(self.test_score, folder / "roc.png", labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def mlflow_model(self) -> tuple[nn.Module, np.ndarray]:
        """Raw rows [E_inc, voxels...] (MeV, float32) -> signal probability, and a two-row input example."""
        example = np.zeros((2, 1 + self.geometry.n_voxels), dtype=np.float32)
        example[:, 0] = (1.0e4, 1.0e5)
        example[:, 1:] = example[:, :1] / self.geometry.n_voxels  # the energy spread evenly: a valid shower
        return nn.Sequential(self.inputs, self.backbone, nn.Sigmoid()), example
