"""`CaloVAE`, the conditional VAE as a LightningModule (after ATLAS ATL-SOFT-PUB-2018-001).

Training: encoder q(z | x, c), decoder p(x | z, c) with a voxel head, the loss terms of `losses.py`; after
each validation epoch the latent prior and the voxel map are fitted to the validation showers, so a
checkpoint always holds the generator of its own decoder. Generation is `self.generator`, a plain module
(`detsim.runtime.ShowerGenerator`, built here from the networks).
Every number comes from `conf/model/calo_vae*.yaml`; head, prior and voxel map are `_target_` configs
(`conf/model/vae/`), built by `build` from detsim's own classes only (checkpoints are data, not code).
"""

from __future__ import annotations

import copy
import importlib
import logging
from typing import Any, Mapping, TypeVar

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn

from detsim.config import to_plain
from detsim.data.settings import DataSettings, measure_settings
from detsim.errors import ConfigError
from detsim.geometry import Geometry, RadialLayer, load_geometry
from detsim.learn.attached import attached_trainer
from detsim.models.vae import losses
from detsim.models.vae.energy_map import EnergyMap, NoEnergyMap
from detsim.models.vae.heads import VoxelHead
from detsim.models.vae.layers import Encoder, ShowerDecoder
from detsim.models.vae.prior import LatentPrior
from detsim.models.vae.transforms import EnergyCondition, VoxelTransform
from detsim.models.vae.voxel_map import IdentityVoxelMap, VoxelCapMap, VoxelMap
from detsim.models.vae.voxel_maxima import VoxelMaxima
from detsim.runtime.generator import ShowerGenerator

log = logging.getLogger(__name__)
T = TypeVar("T")
# Settings taken from the training data when the config leaves them null: hparam path -> DataSettings field.
DATA_SETTINGS = {("readout_threshold_mev",): "threshold_mev", ("condition", "e_min_mev"): "e_min_mev",
                 ("condition", "e_max_mev"): "e_max_mev", ("preprocessing", "scale"): "voxel_scale"}
# what the networks are built with until `setup` has measured them (never used to train or generate)
_PLACEHOLDERS = {"threshold_mev": 0.0, "e_min_mev": 1.0, "e_max_mev": 2.0, "voxel_scale": 1.0}
_HPARAMS = ("geometry", "latent_dim", "encoder", "decoder", "head", "preprocessing", "condition", "loss", "prior",
            "calibration", "voxel_map", "readout_threshold_mev", "optimizer", "energy_map", "max_voxel_fraction")


def build(cfg: Mapping[str, Any], key: str, base: type[T], **runtime: Any) -> T:
    """Instantiate `cfg["_target_"]` with the config's other keys plus `runtime` (sizes known only here).

    Only subclasses of `base` inside the `detsim` package are built: the target is checked as a string
    before anything is imported, so a checkpoint's hyper-parameters cannot reach arbitrary code.
    """
    target = cfg.get("_target_") if isinstance(cfg, Mapping) else None
    if not isinstance(target, str) or not target.startswith("detsim.") or "." not in target.removeprefix("detsim."):
        raise ConfigError(f"model.{key}._target_: expected a detsim class (a {base.__name__}), found {target!r}")
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model.{key}._target_: expected a {base.__name__} class, found {target!r} ({exc})") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"model.{key}._target_: expected a {base.__name__} class, found {target!r}")
    kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
    try:
        return cls(**kwargs, **runtime)
    except TypeError as exc:
        raise ConfigError(f"model.{key}: {target} does not take {sorted(kwargs)}: {exc}") from exc


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(incident energy (N,), showers (N, V)) from a dict, a (e, showers) pair or a CaloShowers-like object."""
    if isinstance(batch, Mapping):
        e = batch.get("incident_energy", batch.get("incident_energies"))
        return e.reshape(-1), batch["showers"]
    if isinstance(batch, (tuple, list)):
        return batch[0].reshape(-1), batch[1]
    return batch.incident_energy.reshape(-1), batch.showers


class CaloVAE(L.LightningModule):
    """The conditional VAE as a LightningModule; every number comes from `conf/model/calo_vae*.yaml`."""

    def __init__(
        self,
        geometry: Mapping[str, Any],
        latent_dim: int,
        encoder: Mapping[str, Any],
        decoder: Mapping[str, Any],
        preprocessing: Mapping[str, Any],
        condition: Mapping[str, Any],
        loss: Mapping[str, Any],
        prior: Mapping[str, Any],
        calibration: str,
        readout_threshold_mev: float | None,
        optimizer: Mapping[str, Any],
        head: Mapping[str, Any],
        voxel_map: Mapping[str, Any],
        energy_map: Mapping[str, Any] | None = None,
        max_voxel_fraction: float = 1.0,
        **unknown: Any,
    ) -> None:
        """Arguments as in `conf/model/calo_vae_atlas.yaml`; head, prior and voxel map are `_target_` configs.

        (Checkpoints written before the package split, with `decoder.output`, `prior.kind` and `marginals`, are
        converted once by `detsim-upgrade-checkpoint`, `detsim.upgrade`.)
        `readout_threshold_mev`, `condition.e_min_mev / e_max_mev` and `preprocessing.scale` may be null:
        `setup` then measures them on the training split (`detsim.data.settings`) and stores them in the
        hyper-parameters, so the checkpoint holds the numbers it was trained with.
        """
        super().__init__()
        if unknown:
            raise ConfigError(f"model: unknown keys {sorted(unknown)}; expected {list(_HPARAMS)}")
        hp = to_plain({
            "geometry": geometry, "latent_dim": latent_dim, "encoder": encoder, "decoder": decoder, "head": head,
            "preprocessing": preprocessing, "condition": condition, "loss": loss, "prior": prior,
            "calibration": calibration, "voxel_map": voxel_map, "readout_threshold_mev": readout_threshold_mev,
            "optimizer": optimizer, "energy_map": energy_map, "max_voxel_fraction": max_voxel_fraction})
        self.save_hyperparameters(hp)
        self.unmeasured = [path for path in DATA_SETTINGS if _get(hp, path) is None]
        hp = _with_settings(hp, {DATA_SETTINGS[p]: _PLACEHOLDERS[DATA_SETTINGS[p]] for p in self.unmeasured})
        self.geometry: Geometry = load_geometry(hp["geometry"])
        self.layer_slices = self.geometry.layer_slices
        n_vox = self.geometry.n_voxels
        self.transform = VoxelTransform(**hp["preprocessing"])
        self.condition = EnergyCondition(**hp["condition"])
        self.weights = losses.LossWeights(**{k.removeprefix("w_"): v for k, v in hp["loss"].items()}).resolve(
            self.geometry.n_layers)
        self.threshold = float(hp["readout_threshold_mev"])
        self.optimizer_cfg = dict(hp["optimizer"])
        enc, dec = hp["encoder"], hp["decoder"]
        dec_hidden = list(dec["hidden"] or enc["hidden"][::-1])
        self.encoder = Encoder(n_vox, list(enc["hidden"]), hp["latent_dim"], enc["activation"], bool(enc["input_norm"]),
                               float(enc["norm_eps"]), enc["norm_momentum"])
        head_module = build(hp["head"], "head", VoxelHead, n_hidden=dec_hidden[-1], n_voxels=n_vox,
                            transform=self.transform)
        layer_bounds = [(s.start, s.stop) for s in self.layer_slices]
        energy_map = (NoEnergyMap(layer_bounds) if hp.get("energy_map") is None else
                      build(hp["energy_map"], "energy_map", EnergyMap, layer_bounds=layer_bounds,
                            voxel_ring=_radial_ring(self.geometry)))
        self.generator = ShowerGenerator(
            ShowerDecoder(hp["latent_dim"], dec_hidden, dec["activation"], head_module),
            build(hp["prior"], "prior", LatentPrior, latent_dim=hp["latent_dim"]),
            self.condition,
            self.threshold,
            hp["calibration"],
            layer_bounds,
            build(hp["voxel_map"], "voxel_map", VoxelMap, n_voxels=n_vox),
            energy_map,
            float(hp.get("max_voxel_fraction") or 1.0),
        )
        self._posterior: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._reference: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._train_layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        vmap = self.generator.voxel_map
        self._train_maxima = (VoxelMaxima(vmap.n_bins, n_vox, vmap.reference_showers)
                              if isinstance(vmap, VoxelCapMap) and vmap.reference == "training" else None)

    # --- settings from the data -----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Measure the null data settings on the datamodule's training split (once, before the first step)."""
        if not self.unmeasured:
            return
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if datamodule is None:
            raise ConfigError(f"model: {self._unmeasured_names()} are null (measure from the training data), "
                              "but the trainer has no datamodule to measure them on; set them in the config")
        source = f"training split of {getattr(datamodule, 'path', 'the datamodule')}"
        self.apply_settings(measure_settings(datamodule.train_dataloader(), source), source)

    def apply_settings(self, measured: DataSettings, source: str = "training data") -> None:
        """Take the null settings from `measured`, store them in the hyper-parameters, log them."""
        values = {DATA_SETTINGS[p]: getattr(measured, DATA_SETTINGS[p]) for p in self.unmeasured}
        hp = _with_settings(dict(self.hparams), values)
        for key in ("readout_threshold_mev", "condition", "preprocessing"):
            self.hparams[key] = hp[key]
        self.threshold = self.generator.threshold_mev = float(hp["readout_threshold_mev"])
        self.condition = self.generator.condition = EnergyCondition(**hp["condition"])
        self.transform = VoxelTransform(**hp["preprocessing"])
        if hasattr(self.generator.decoder.head, "transform"):
            self.generator.decoder.head.transform = self.transform
        log.info("measured on the %s (%d showers): %s", source, measured.n_showers,
                 ", ".join(f"{'.'.join(p)}={_get(hp, p):.6g}" for p in self.unmeasured))
        if attached_trainer(self) is not None and self.logger is not None:
            self.logger.log_hyperparams({f"measured/{'.'.join(p)}": _get(hp, p) for p in self.unmeasured})
        self.unmeasured = []

    def _unmeasured_names(self) -> str:
        return ", ".join(".".join(p) for p in self.unmeasured)

    def _check_measured(self) -> None:
        if self.unmeasured:
            raise ConfigError(f"model: {self._unmeasured_names()} not measured yet (null in the config): train it "
                              "first, or set them")

    # --- the model ------------------------------------------------------------------------------
    def forward(self, incident_energy: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Generate showers (MeV) for the given incident energies (MeV), every random number from `rng`."""
        self._check_measured()
        return self.generator(incident_energy, rng)

    @torch.inference_mode()
    def sample(self, incident_energy: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        self._check_measured()
        return self.generator(incident_energy.to(self.device), rng)

    def loss_terms(self, e_inc: torch.Tensor, showers: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """All terms for a batch, plus the condition and stacked (z, mu, logvar) for the latent prior."""
        c = self.condition.forward(e_inc)
        mu, logvar = self.encoder(self.transform.forward(showers, e_inc), c)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        decoder = self.generator.decoder
        out = decoder(z, c)
        terms = decoder.head.reco_terms(out, showers, e_inc, self.threshold)
        reco = sum(terms.values())
        target = showers / e_inc.reshape(-1, 1)
        mean = decoder.head.mean_fraction(out)
        per_layer = losses.layer_fraction_loss(mean, target, self.layer_slices)
        w = self.weights
        layer_weighted = sum(wl * t for wl, t in zip(w.layer_list, per_layer))
        kl = losses.kl_divergence(mu, logvar)
        etot = losses.total_energy_loss(mean, target)
        total = w.reco * reco + w.kl_at(self.global_step) * kl + w.etot * etot + layer_weighted
        result = dict(terms) if len(terms) > 1 else {}
        result.update(reco=reco, kl=kl, etot=etot, layer=layer_weighted, loss=total)
        result.update({f"layer_{lid}": t for lid, t in zip(self.geometry.layer_ids, per_layer)})
        return result, c, torch.stack([z, mu, logvar])

    # --- Lightning hooks --------------------------------------------------------------------------
    def _step(self, batch: Any, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e_inc, showers = unpack_batch(batch)
        terms, c, z = self.loss_terms(e_inc.float(), showers.float())
        on_step = stage == "train"
        # Training steps log every term only on the steps Lightning writes to the logger ((step + 1) % n
        # == 0), since each self.log call costs time; the loss is logged on every step.
        trainer = attached_trainer(self)
        every = trainer.log_every_n_steps if trainer is not None else 1
        if on_step and (self.global_step + 1) % max(every, 1):
            terms = {"loss": terms["loss"]}
        elif on_step:
            terms["kl_weight"] = torch.tensor(self.weights.kl_at(self.global_step))
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value, on_step=on_step, on_epoch=not on_step,
                     prog_bar=name == "loss", batch_size=len(e_inc))
        return terms["loss"], c, z

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")[0]
        self._keep_layer_energies(batch)
        if self._train_maxima is not None and not self._train_maxima.full:
            e_inc, showers = unpack_batch(batch)
            self._train_maxima.update(self.condition.forward(e_inc.reshape(-1)), showers / e_inc.reshape(-1, 1))
        return loss

    def _keep_layer_energies(self, batch: Any) -> None:
        """Keep the training showers' incident and layer energies (L numbers a shower): the energy map's reference.

        Kept across epochs until `reference_showers` are held (they are data, not model outputs): a last epoch
        cut short by `trainer.max_time` then still fits the map to the full reference, not to a few batches.
        """
        emap = self.generator.energy_map
        kept = sum(len(e) for e, _ in self._train_layers)
        if isinstance(emap, NoEnergyMap) or kept >= emap.reference_showers:
            return
        e_inc, showers = unpack_batch(batch)
        take = emap.reference_showers - kept
        with torch.no_grad():
            self._train_layers.append((e_inc[:take].detach().float(), emap.group_energies(showers[:take].detach().float())))


    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, c, post = self._step(batch, "val")
        self._posterior.append((c.detach(), post.detach()))
        kept = sum(len(e) for e, _ in self._reference)
        vmap = self.generator.voxel_map
        if not isinstance(vmap, IdentityVoxelMap) and self._train_maxima is None and kept < vmap.reference_showers:
            e_inc, showers = unpack_batch(batch)
            take = vmap.reference_showers - kept
            self._reference.append((e_inc[:take].detach().float(), showers[:take].detach().float()))
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")[0]

    def on_validation_epoch_start(self) -> None:
        self._posterior, self._reference = [], []

    def on_validation_epoch_end(self) -> None:
        if self._posterior and not self.trainer.sanity_checking:
            # float32: under bf16 autocast the encoder's outputs are bf16, which the prior's fit (cholesky) refuses
            c = torch.cat([p[0] for p in self._posterior]).float()
            post = torch.cat([p[1] for p in self._posterior], dim=1).float()
            self.generator.prior.fit(c, post[0], post[1], post[2])
            if self._train_maxima is not None and self._train_maxima.seen:
                self.generator.voxel_map.fit_maxima(self._train_maxima.top)
            elif self._reference:
                self.fit_voxel_map(torch.cat([r[0] for r in self._reference]), torch.cat([r[1] for r in self._reference]))
            if self._train_layers:
                self.fit_energy_map(torch.cat([r[0] for r in self._train_layers]),
                                    torch.cat([r[1] for r in self._train_layers]))
        self._posterior, self._reference = [], []

    @torch.no_grad()
    def fit_voxel_map(self, e_inc: torch.Tensor, showers: torch.Tensor, seed: int = 0) -> None:
        """Fit the per-voxel map to reference showers (MeV) and their energies (MeV).

        The generator draws `samples_per_shower` unmapped showers per reference energy (from the current
        prior, with a fixed seed) and the map moves their voxel distributions onto the reference's. Training
        calls this after each validation epoch with the validation showers, so a checkpoint always holds the
        map of its own decoder.
        """
        vmap = self.generator.voxel_map
        e_inc = e_inc.reshape(-1).to(self.device, torch.float32)
        e_gen = e_inc.repeat(max(vmap.samples_per_shower, 1))
        rng = torch.Generator(device=e_gen.device).manual_seed(seed)
        # both maps off: the voxel map is fitted to the decoder's own showers (with the energy map of the previous
        # epoch on, each map was fitted to the other's output: a feedback that blew E_tot up 1.3-2.3x by epoch 41)
        with vmap.disabled(), self.generator.energy_map.disabled():
            generated = self.generator(e_gen, rng)
        vmap.fit(self.condition.forward(e_inc), showers.to(self.device) / e_inc.reshape(-1, 1),
                      self.condition.forward(e_gen), generated / e_gen.reshape(-1, 1))

    @torch.no_grad()
    def fit_energy_map(self, e_inc: torch.Tensor, groups: torch.Tensor, seed: int = 1) -> None:
        """Fit the energy map to reference incident energies (N,) and voxel-group energies (N, G), MeV.

        The generator draws `samples_per_shower` showers per reference energy with the energy map off (the
        voxel map on, as fitted) and the map moves their layer energies and totals onto the reference's.
        Training calls this after each validation epoch with the training showers kept so far (their layer
        sums only: L numbers a shower, so all of them fit in memory).
        """
        emap = self.generator.energy_map
        e_inc = e_inc.reshape(-1).to(self.device, torch.float32)
        e_gen = e_inc.repeat(max(emap.samples_per_shower, 1))
        rng = torch.Generator(device=e_gen.device).manual_seed(seed)
        with emap.disabled():
            generated = self.generator(e_gen, rng)
        c_gen = self.condition.forward(e_gen)
        bound = self.generator.group_bound(e_gen.reshape(-1, 1), c_gen, self.generator.voxel_map.active)
        emap.fit_showers(self.condition.forward(e_inc), groups.to(self.device) / e_inc.reshape(-1, 1), c_gen,
                         generated, e_gen.reshape(-1, 1), bound)

    def configure_optimizers(self) -> Any:
        cfg = self.optimizer_cfg
        opt = torch.optim.Adam(self.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
        plateau = cfg["plateau"]
        if not plateau:
            return opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **dict(plateau))
        # strict=False: a fit without validation (benchmarks, limit_val_batches=0) keeps the learning rate
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "strict": False}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the MLflow run, so files generated from this checkpoint can name it."""
        run_id = getattr(self.logger, "run_id", None) if self.logger is not None else None
        if isinstance(run_id, str):
            checkpoint["mlflow_run_id"] = run_id

    def mlflow_model(self) -> tuple[nn.Module, np.ndarray]:
        """The plain generator (CPU, eval mode) and an input example, for `mlflow.pytorch.log_model`."""
        module = copy.deepcopy(self.generator).cpu().eval()
        example = np.array([[self.condition.e_min_mev], [self.condition.e_max_mev]], dtype=np.float32)
        return module, example


def _radial_ring(geometry: Geometry) -> np.ndarray:
    """(V,) radial bin of each voxel in its layer (0 in rectangular grid layers, which have no rings)."""
    ring = geometry.voxel_cell_index[1].copy()
    for layer, sl in zip(geometry.layers, geometry.layer_slices):
        if not isinstance(layer, RadialLayer):
            ring[sl] = 0
    return ring


def _get(hp: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        hp = hp[key]
    return hp


def _with_settings(hp: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    """A copy of the hyper-parameters with the `DATA_SETTINGS` fields named in `values` set."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in hp.items()}
    for path, field in DATA_SETTINGS.items():
        if field in values:
            target = out
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = float(values[field])
    return out
