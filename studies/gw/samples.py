"""Issue 5's accuracy target without pycbc: rebuild a synthetic GW train/test set from a bundle
(detsim.gw.study.bundle) with numpy, train the 1D CNN, and compare its test ROC AUC with the matched
filter's with true templates (target: CNN within 0.02).

Imports only numpy/scipy/torch/lightning/rich/h5py and detsim modules that need nothing else, so it runs on a
GPU machine with no pycbc, Hydra or MLflow:
    PYTHONPATH=src python3 detsim.gw.study.device_run --bundle .gwbundle/bundle.npz --device cuda --minutes 6 --out $OUT

Samples are rebuilt with the simulator's own functions: `orient` (inclination, phase), `scaled_signal`
(projection with the bundled F+, Fx and delays, sub-sample shift, scaling to the requested network
optimal SNR against the PSD) and `noise_segment` (noise coloured in the frequency domain from the PSD).
Sample i of a split draws its noise from default_rng([noise_seed, split, i]), so the set does not depend
on the number of workers. Whitening is `Whitener` fitted on the noise-only training samples; the matched
filter is `MatchedFilter.own_template_scores` fed with each sample's bundled binary (noise-only samples
use their drawn-but-not-injected binary).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from detsim.gw.synth import noise_segment, scaled_signal
from detsim.gw.waveform import orient, quadrature

SPLITS = {"train": 0, "test": 1}


@dataclass
class Bundle:
    """The loaded .npz: arrays by name plus the resolved configs (`meta`)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Bundle":
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(arrays, json.loads(str(arrays.pop("config_json"))))

    @property
    def sim(self) -> dict[str, Any]:
        return self.meta["simulator"]

    def size(self, split: str) -> int:
        return len(self.arrays[f"{split}_target"])

    def plus0(self, split: str, wave: int) -> tuple[np.ndarray, int]:
        """Face-on, zero-phase h+ (unit peak) of binary `wave` and its merger index; a packed bundle
        (detsim.gw.study.bundle_pack) stores it as int8 with a scale per binary."""
        off = self.arrays[f"{split}_wave_offset"]
        plus = self.arrays[f"{split}_wave_data"][off[wave] : off[wave + 1]].astype(np.float64)
        if f"{split}_wave_scale" in self.arrays:
            plus *= float(self.arrays[f"{split}_wave_scale"][wave])
        return plus, int(self.arrays[f"{split}_wave_merger"][wave])

    def psds(self, kind: str) -> list[np.ndarray]:
        return [self.arrays[f"psd_{kind}_{d}"] for d in self.sim["detectors"]]

    def redrawn(self, n: int, draw: int) -> "Bundle":
        """The bundle with the first n training samples re-drawn: every group of independently drawn
        parameters (binary, sky position with polarisation and its antenna responses, inclination, phase,
        merger time, SNR) permuted on its own among those rows, and fresh noise. Each group stays a sample
        of its prior, so the result is a new training set of the same distribution (same binaries). The
        antenna responses were computed at each row's own merger time; moving it by < 1 s turns the Earth
        by < 1e-4 rad, far below what the data resolve."""
        rng = np.random.default_rng([int(self.meta["noise_seed"]), 99, draw])
        arrays = dict(self.arrays)
        for group in (("wave",), ("ra", "dec", "polarization", "f_plus", "f_cross", "delay"), ("inclination",),
                      ("coa_phase",), ("t_merger",), ("snr",)):
            order = rng.permutation(n)
            for key in group:
                column = arrays[f"train_{key}"].copy()
                column[:n] = column[order]
                arrays[f"train_{key}"] = column
        out = Bundle(arrays, {**self.meta, "noise_seed": [int(self.meta["noise_seed"]), 99, draw]})
        return out.with_decoys(n, draw) if self.meta.get("decoys") else out

    def with_decoys(self, n: int, draw: int = 0) -> "Bundle":
        """The bundle with a share (`meta["decoys"]["fraction"]`) of the noise-only rows among the first n training
        rows turned into decoys: their drawn signal is injected with its merger moved to a time the prior excludes
        (uniform in `meta["decoys"]["window"]`, seconds), and their label stays 0. The matched filter only looks
        for mergers where the prior allows them, which is worth 0.007 of AUC to it (docs/gw.md); a network learns
        that preference only from noise unless it is shown signals outside the window that are not signals of the
        prior."""
        cfg = self.meta["decoys"]
        rng = np.random.default_rng([int(np.atleast_1d(self.meta["noise_seed"])[0]), 98, draw])
        arrays = dict(self.arrays)
        noise_rows = np.flatnonzero(arrays["train_target"][:n] == 0)
        chosen = rng.choice(noise_rows, int(round(float(cfg["fraction"]) * len(noise_rows))), replace=False)
        decoy = np.zeros(len(arrays["train_target"]), dtype=bool)
        decoy[chosen] = True
        t_merger = arrays["train_t_merger"].astype(np.float64)
        t_merger[chosen] = rng.uniform(*map(float, cfg["window"]), len(chosen))
        arrays.update(train_decoy=decoy, train_t_merger=t_merger)
        return Bundle(arrays, self.meta)


def rebuild_signal(bundle: Bundle, split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_det, n) signal of sample i at its requested network SNR (also for noise-only samples) and per-detector SNRs."""
    a, sim = bundle.arrays, bundle.sim
    plus0, merger = bundle.plus0(split, int(a[f"{split}_wave"][i]))
    pol = orient(plus0, quadrature(plus0), merger, float(a[f"{split}_inclination"][i]), float(a[f"{split}_coa_phase"][i]))
    arrivals = float(a[f"{split}_t_merger"][i]) + a[f"{split}_delay"][i].astype(np.float64)   # float32 when packed
    signal, snrs, _ = scaled_signal(pol, a[f"{split}_f_plus"][i].astype(np.float64), a[f"{split}_f_cross"][i].astype(np.float64), arrivals,
                                    float(a[f"{split}_snr"][i]), bundle.psds("snr"), int(bundle.meta["n_samples"]),
                                    float(sim["sample_rate"]), float(sim["snr_f_lower"]))
    return signal, snrs


def rebuild_parts(bundle: Bundle, split: str, i: int) -> tuple[np.ndarray, float]:
    """(2, n_det, n): sample i's noise and, for a labelled sample, its signal (zeros otherwise), and its SNR.

    Their sum is `rebuild_sample`; kept apart so training can pair every signal with fresh noise."""
    rng = np.random.default_rng([*np.atleast_1d(bundle.meta["noise_seed"]).tolist(), SPLITS[split], int(i)])
    noise = noise_segment(bundle.psds("noise"), int(bundle.meta["noise_samples"]), int(bundle.meta["n_samples"]),
                          float(bundle.sim["sample_rate"]), rng)
    decoy = f"{split}_decoy" in bundle.arrays and bool(bundle.arrays[f"{split}_decoy"][i])   # `Bundle.with_decoys`
    if not (bundle.arrays[f"{split}_target"][i] or decoy):
        return np.stack([noise, np.zeros_like(noise)]), 0.0
    signal, snrs = rebuild_signal(bundle, split, i)
    return np.stack([noise, signal]), float(np.sqrt(np.sum(snrs**2)))


def rebuild_sample(bundle: Bundle, split: str, i: int) -> tuple[np.ndarray, float]:
    """(n_det, n) strain of sample i (noise + signal if labelled 1) and its injected network SNR (0 if noise only)."""
    parts, snr = rebuild_parts(bundle, split, i)
    return parts.sum(axis=0), snr


_SHARED: dict[str, Any] = {}


def _rebuild_block(job: tuple[str, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    split, start, stop = job
    build = rebuild_parts if _SHARED.get("parts") else rebuild_sample
    out = [build(_SHARED["bundle"], split, i) for i in range(start, stop)]
    return start, np.stack([s for s, _ in out]).astype(np.float32), np.array([snr for _, snr in out])


def rebuild_split(bundle: Bundle, split: str, n: int, workers: int, block: int = 64,
                  progress: bool = True, parts: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Strain (n, n_det, n_samples) float32 and injected SNR of the first n samples of a split, in parallel.

    parts=True: (n, 2, n_det, n_samples), noise and signal apart (`rebuild_parts`)."""
    from rich.progress import track

    n_det = len(bundle.sim["detectors"])
    strain = np.empty((n, *((2,) if parts else ()), n_det, int(bundle.meta["n_samples"])), dtype=np.float32)
    snr = np.empty(n)
    jobs = [(split, s, min(s + block, n)) for s in range(0, n, block)]
    _SHARED["bundle"], _SHARED["parts"] = bundle, parts
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    results = pool.imap_unordered(_rebuild_block, jobs) if pool else map(_rebuild_block, jobs)
    for start, x, s in track(results, total=len(jobs), description=f"rebuild {split} ({n})", disable=not progress):
        strain[start : start + len(x)], snr[start : start + len(x)] = x, s
    if pool:
        pool.close()
    return strain, snr


def _redraw_block(job: tuple[int, int, int, int]) -> np.ndarray | None:
    """Whitened strain of training rows [start, stop) of re-draw `draw` (runs in a `Redrawer` process); None once
    the Redrawer closes, so a re-draw nobody will use drains in moments."""
    draw, n, start, stop = job
    if _SHARED["closing"].is_set():
        return None
    if _SHARED.get("draw") != draw:   # the permutation is cheap; keep one per process and draw
        _SHARED["draw"], _SHARED["redrawn"] = draw, _SHARED["bundle"].redrawn(n, draw)
    strain = np.stack([rebuild_sample(_SHARED["redrawn"], "train", i)[0] for i in range(start, stop)])
    return _SHARED["whitener"](strain)


class Redrawer:
    """`--redraw N`: the training set of epoch e (e = N, 2N, ...) is re-drawn (`Bundle.redrawn`) and whitened by a
    pool of processes while the network trains on the previous one, so a GPU does not wait for the CPU.

    The pool is forked once, before CUDA starts (a forked process must not inherit a CUDA context), with the
    bundle and the fitted whitener; each call returns the set of its epoch and queues the next one. `close` lets
    the queued re-draw drain and joins the pool: `Pool.terminate` with tasks in flight can deadlock (seen in the
    test suite: its task-feeding thread blocked on the queue's lock while the pool joined it)."""

    def __init__(self, bundle: Bundle, n: int, whitener: Any, every: int, workers: int, block: int = 64) -> None:
        context = mp.get_context("fork")
        self.closing = context.Event()
        _SHARED.update(bundle=bundle, whitener=whitener, draw=None, closing=self.closing)
        self.n, self.every, self.block = n, every, block
        self.pool = context.Pool(max(1, workers))
        self.pending: dict[int, Any] = {}
        self.waited, self.draws = 0.0, 0
        self.submit(every)

    def submit(self, epoch: int) -> None:
        jobs = [(epoch, self.n, s, min(s + self.block, self.n)) for s in range(0, self.n, self.block)]
        self.pending[epoch] = self.pool.map_async(_redraw_block, jobs)

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch not in self.pending:
            self.submit(epoch)
        t0 = time.perf_counter()
        blocks = self.pending.pop(epoch).get()
        self.waited += time.perf_counter() - t0
        self.draws += 1
        self.submit(epoch + self.every)
        return np.concatenate(blocks)

    def close(self, drain_seconds: float = 120.0) -> None:
        self.closing.set()
        for result in self.pending.values():
            result.wait(drain_seconds)
        self.pool.close()
        if all(result.ready() for result in self.pending.values()):
            self.pool.join()
        else:   # a worker is stuck: leave it to the pool's finaliser rather than block the run's report
            self.pool.terminate()


def whitener_of(bundle: Bundle, noise: np.ndarray | None = None) -> Any:
    """The bundle's configured `Whitener`, fitted on `noise` (noise-only training strain) when given."""
    from detsim.gw.whiten import Whitener

    whitener = Whitener(**{k: v for k, v in bundle.meta["preprocessing"].items() if k != "_target_"})
    return whitener if noise is None else whitener.fit(noise)


def network_of(net_cfg: dict[str, Any]) -> Any:
    """A GW1DCNN from a `net` config (the bundled model config with any `--net` overrides)."""
    from detsim.gw.cnn import GW1DCNN

    return GW1DCNN(**{k: v for k, v in net_cfg.items() if k != "_target_"})


def template_waves(bundle: Bundle, split: str, waves: Any) -> np.ndarray:
    """(len, n_samples) wrapped face-on h+ (`wrap_at_merger`) of the bundled binaries `waves` of a split
    ("train", "test" or "bank")."""
    from detsim.gw.matched_filter import wrap_at_merger

    fs, n_samples = float(bundle.sim["sample_rate"]), int(bundle.meta["n_samples"])
    return np.stack([wrap_at_merger(*bundle.plus0(split, int(w)), n_samples, fs) for w in waves])


def true_template_waves(bundle: Bundle, split: str, sl: slice) -> np.ndarray:
    """Templates of the own binary of samples `sl`, for `MatchedFilter.own_template_scores`."""
    return template_waves(bundle, split, bundle.arrays[f"{split}_wave"][sl])


def matched_filter(bundle: Bundle, whitener: Any, device: str) -> Any:
    from detsim.gw.matched_filter import MatchedFilter

    t_merger = bundle.sim["priors"]["t_merger"]
    return MatchedFilter(whitener, str(bundle.sim["approximant"]), float(bundle.sim["f_lower"]),
                         (float(t_merger["low"]), float(t_merger["high"])), float(bundle.meta["bank"]["coincidence"]),
                         device=device, batch=256 if device != "cpu" else 64)


def matched_filter_scores(bundle: Bundle, whitener: Any, raw_test: np.ndarray, device: str,
                          bank: bool = True) -> dict[str, np.ndarray]:
    """Matched-filter statistics of the test strain: with each sample's true template (`mf_true`, the bound) and,
    when the bundle holds a bank and `bank`, the max over the bank (`mf_bank<K>`, the search a real analysis runs)."""
    mf = matched_filter(bundle, whitener, device)
    scores = {"mf_true": mf.own_template_scores(raw_test, lambda sl: true_template_waves(bundle, "test", sl),
                                                progress=True)}
    if bank and "bank_wave_offset" in bundle.arrays:
        waves = template_waves(bundle, "bank", range(len(bundle.arrays["bank_wave_merger"])))
        scores[f"mf_bank{len(waves)}"] = mf.wave_bank_scores(raw_test, waves, progress=True)
    return scores


def _autocast(device: str, precision: str) -> Any:
    """bf16 autocast (`--precision bf16`: 1.6x faster CNN training on an AVX512-BF16 CPU) or a no-op."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _scores(net: Any, x: Any, batch: int, precision: str = "32") -> np.ndarray:
    """One-view logits of x in batches (the validation score while training)."""
    import torch

    net.eval()
    with torch.no_grad(), _autocast(str(x.device), precision):
        out = [net(x[s : s + batch]).float().cpu() for s in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def cnn_test_scores(net: Any, x: Any, batch: int, precision: str = "32", progress: str | None = None) -> dict[str, np.ndarray]:
    """`cnn` (one view) and `cnn_symmetric` (mean of the four symmetric views, `view_logits`) logits of x, from one
    pass over the views; `progress` names a progress bar (minutes for a large test set on a CPU)."""
    import torch
    from rich.progress import track

    from detsim.gw.cnn import view_logits

    net.eval()
    one, mean = [], []
    with torch.no_grad(), _autocast(str(x.device), precision):
        for s in track(range(0, len(x), batch), description=progress or "", disable=progress is None):
            views = view_logits(net, x[s : s + batch]).float().cpu()
            one.append(views[0])
            mean.append(views.mean(0))
    return {"cnn": torch.cat(one).numpy(), "cnn_symmetric": torch.cat(mean).numpy()}


def train_cnn(bundle: Bundle, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              device: str, minutes: float, max_epochs: int, batch_size: int, seed: int,
              progress: bool = True, noise_pool: np.ndarray | None = None, precision: str = "32",
              redraw: Callable[[int], np.ndarray] | None = None, redraw_every: int = 0,
              init: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Plain-loop training of GW1DCNN (model config from the bundle): the number of epochs is re-planned after
    every epoch to fit `minutes` (`planned_epochs`), with a cosine learning rate over the epochs after the
    first; the weights of the best validation AUC are kept.

    noise_pool: whitened noise-only strain; then `x_train` holds the whitened *signals* (zeros for
    noise-only samples) and every batch adds a noise segment drawn at random from the pool, so the
    network never sees the same noise twice with the same signal (whitening is linear, so this is
    exactly a new sample of the same distribution).

    redraw: called with the epoch before every `redraw_every`-th epoch (after the first), it returns a new
    whitened training set like `x_train` (same labels; `Bundle.redrawn`, `Redrawer`), so the network sees
    each binary with ever new sky positions, orientations, SNRs and noise.

    init: weights of a finished run (`initial_weights`) to continue from; parameters the new network adds keep
    their initial values."""
    import torch
    from rich.progress import Progress

    from detsim.metrics.roc import roc_auc
    from detsim.gw.cnn import augment

    torch.manual_seed(seed)
    model_cfg = bundle.meta["model"]
    net = network_of(model_cfg["net"])
    if init is not None:
        net.load_state_dict(init, strict=False)
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=float(model_cfg["lr"]), weight_decay=float(model_cfg["weight_decay"]))
    xt, yt = torch.as_tensor(x_train, device=device), torch.as_tensor(y_train, dtype=torch.float32, device=device)
    xv = torch.as_tensor(x_val, device=device)
    pool = None if noise_pool is None else torch.as_tensor(noise_pool, device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    steps_per_epoch = math.ceil(len(xt) / batch_size)
    epochs, history, best, budget = max_epochs, [], (-1.0, None, 0), minutes * 60.0
    t0 = time.perf_counter()
    with Progress(disable=not progress) as bar:
        task = bar.add_task("training", total=None)
        epoch = 0
        while epoch < epochs:
            if redraw is not None and redraw_every > 0 and epoch > 0 and epoch % redraw_every == 0:
                xt = torch.as_tensor(redraw(epoch), device=device)
            net.train()
            order = torch.randperm(len(xt), generator=gen).to(device)
            total = 0.0
            for step in range(steps_per_epoch):
                if epoch > 0:   # cosine over the epochs after the timed first one
                    frac = ((epoch - 1) * steps_per_epoch + step) / max((epochs - 1) * steps_per_epoch, 1)
                    for group in opt.param_groups:
                        group["lr"] = float(model_cfg["lr"]) * 0.5 * (1.0 + math.cos(math.pi * frac))
                idx = order[step * batch_size : (step + 1) * batch_size]
                xb = xt[idx]
                if pool is not None:
                    xb = xb + pool[torch.randint(len(pool), (len(idx),), generator=gen).to(device)]
                with _autocast(device, precision):
                    logits = net(augment(xb, **model_cfg["augmentation"]))
                loss = loss_fn(logits.float(), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            val_auc = roc_auc(y_val, _scores(net, xv, 1024, precision))
            elapsed = time.perf_counter() - t0
            epochs = planned_epochs(epoch + 1, elapsed, budget, max_epochs)
            bar.update(task, total=epochs)
            history.append({"epoch": epoch + 1, "loss": total / len(xt), "val_auc": val_auc, "seconds": elapsed})
            if val_auc > best[0]:
                best = (val_auc, {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch + 1)
            bar.update(task, completed=epoch + 1, description=f"epoch {epoch + 1}/{epochs} val AUC {val_auc:.4f}")
            epoch += 1
    seconds = time.perf_counter() - t0
    net.load_state_dict(best[1])
    return net, {"epochs": epochs, "best_epoch": best[2], "best_val_auc": best[0], "seconds": seconds,
                 "samples_per_s": epochs * len(xt) / seconds, "history": history}


def initial_weights(run_dir: str | Path, net_cfg: dict[str, Any]) -> dict[str, Any]:
    """The weights of a finished run (RUN_DIR/gw_1dcnn.pt) for a network built from `net_cfg`: every weight of the
    run must fit it; the network may add layers, which then start from their initial values."""
    import torch

    path = Path(run_dir) / "gw_1dcnn.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--init {run_dir}: no gw_1dcnn.pt there (the output folder of a gw_device_run.py run)")
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


VIEWS = {"symmetric": "cnn_symmetric", "one": "cnn"}   # a CNN view -> its score's key in gw_test_scores.npz


def configured_view(model_cfg: dict[str, Any]) -> str:
    """The CNN score the model config names, chosen before looking: `model.test_time_augmentation` picks the
    mean over the symmetric views."""
    return VIEWS["symmetric" if model_cfg.get("test_time_augmentation") else "one"]


def report_scores(scores: dict[str, np.ndarray], target: np.ndarray, snr: np.ndarray, model_cfg: dict[str, Any],
                  cnn_key: str, allowed: float, label: str, detector: str = "CNN") -> dict[str, Any]:
    """Print the SNR-binned AUC table of every detector and the verdict of `cnn_key` against the true-template
    matched filter (issue 5: within `allowed`); one report for a single run and for an ensemble of runs.
    `detector` names what `cnn_key` is in the verdict line, so a combined statistic is not called a CNN."""
    from detsim.gw.report import format_table, snr_binned_table
    from detsim.metrics.roc import auc_difference, roc_auc

    rows = snr_binned_table(scores, target, snr, list(model_cfg["snr_bins"]), float(model_cfg["false_alarm"]))
    print(format_table(rows))
    auc = {k: roc_auc(target, v) for k, v in scores.items()}
    searches = {"": "max over", "_marginal": "marginalised over", "_prior": "prior-weighted marginal over"}
    for name in (k for k in auc if k.startswith("mf_bank")):
        size, _, kind = name[7:].partition("_")
        print(f"template-bank matched filter ({searches[f'_{kind}' if kind else '']} {size} templates, the search a real "
              f"analysis runs): AUC {auc[name]:.4f}")
    gap, gap_se = auc_difference(target, scores[cnn_key], scores["mf_true"])
    verdict = "PASS" if gap >= -allowed else "MISS"
    print(f"{label}: {detector} AUC {auc[cnn_key]:.4f}, true-template MF AUC {auc['mf_true']:.4f}, "
          f"{detector} - MF = {gap:+.4f} +- {gap_se:.4f} (DeLong s.e. on this test set) -> {verdict} (target >= -{allowed})")
    return {"auc": auc, "gap": gap, "gap_se": gap_se, "verdict": verdict, "target": allowed, "table": rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    bundle = Bundle.load(args.bundle)
    if args.net:   # architecture overrides of the bundled conf/model/gw_1dcnn.yaml `net`
        bundle.meta["model"]["net"].update(json.loads(args.net))
    if args.lr:   # e.g. a smaller learning rate to continue from --init
        bundle.meta["model"]["lr"] = args.lr
    init = initial_weights(args.init, bundle.meta["model"]["net"]) if args.init else None
    if args.preprocessing:   # overrides of the bundled conf/gw/preprocessing (the Whitener)
        bundle.meta["preprocessing"].update(json.loads(args.preprocessing))
    n_all = min(args.n_train or bundle.size("train"), bundle.size("train"))
    n_test = min(args.n_test or bundle.size("test"), bundle.size("test"))
    n_val = int(round(n_all * float(bundle.meta["data"]["val_fraction"])))
    n_train = n_all - n_val
    report: dict[str, Any] = {"bundle": str(args.bundle), "device": args.device, "workers": args.workers,
                              "torch": torch.__version__, "net": bundle.meta["model"]["net"],
                              "preprocessing": bundle.meta["preprocessing"], "decoys": args.decoys,
                              "decoy_window": args.decoy_window}

    first_set = bundle     # the training rows of the first epochs; re-draws start again from `bundle`
    if args.decoys:
        t_low = float(bundle.sim["priors"]["t_merger"]["low"])
        window = args.decoy_window or [0.3, t_low - 0.1]
        if not 0.0 <= window[0] < window[1] <= t_low:
            raise SystemExit(f"--decoy-window {window} must lie before the prior's earliest merger ({t_low} s)")
        bundle.meta["decoys"] = {"fraction": args.decoys, "window": window}
        first_set = bundle.with_decoys(n_train)     # validation keeps the test's distribution
    t0 = time.perf_counter()
    raw_train, _ = rebuild_split(first_set, "train", n_all, args.workers, parts=args.remix)
    raw_test, snr_test = rebuild_split(bundle, "test", n_test, args.workers)
    dt = time.perf_counter() - t0
    report["synthesis"] = {"samples": n_all + n_test, "seconds": dt, "samples_per_s": (n_all + n_test) / dt,
                           "samples_per_s_per_core": (n_all + n_test) / dt / args.workers}
    print(f"rebuild: {n_all + n_test} samples in {dt:.1f} s with {args.workers} processes "
          f"= {(n_all + n_test) / dt / args.workers:.1f} samples/s per core (numpy part only; pycbc part in the bundle)")

    t0 = time.perf_counter()
    y_all = bundle.arrays["train_target"][:n_all].astype(np.float32)
    y_test = bundle.arrays["test_target"][:n_test].astype(np.float32)
    pool = None
    if args.remix:   # noise and signal apart: whitening is linear, so whiten each and add them as needed
        noise, signal = raw_train[:, 0], raw_train[:, 1]
        whitener = whitener_of(bundle, noise[:n_train][y_all[:n_train] == 0])
        pool, white_signal = whitener(noise[:n_train]), whitener(signal)
        x_all = white_signal.copy()
        x_all[n_train:] += whitener(noise[n_train:])  # validation keeps its own fixed noise
        x_test = whitener(raw_test)
    else:
        rows = np.flatnonzero(y_all[:n_train] == 0)
        noise = raw_train[rows]
        if args.decoys:   # decoy rows carry a signal: fit on their noise alone, as a run without decoys (and a rescore) does
            for j in np.flatnonzero(first_set.arrays["train_decoy"][rows]):
                noise[j] = rebuild_sample(bundle, "train", int(rows[j]))[0]
        whitener = whitener_of(bundle, noise)
        del noise
        x_all, x_test = whitener(raw_train), whitener(raw_test)
    del raw_train
    report["whitening_seconds"] = time.perf_counter() - t0
    print(f"whitening: fit on {int(np.sum(y_all[:n_train] == 0))} noise-only training samples, applied to "
          f"{n_all + n_test} in {report['whitening_seconds']:.1f} s")

    redraw = Redrawer(bundle, n_train, whitener, args.redraw, args.workers) if args.redraw else None
    if args.device.startswith("cuda"):   # after every fork of rebuild processes
        report["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        net, training = train_cnn(bundle, x_all[:n_train], y_all[:n_train], x_all[n_train:], y_all[n_train:],
                                  args.device, args.minutes, args.max_epochs, args.batch_size, args.seed,
                                  noise_pool=pool, precision=args.precision, redraw=redraw, redraw_every=args.redraw,
                                  init=init)
    finally:
        if redraw is not None:
            redraw.close()
    training.update(remix=bool(args.remix), redraw_every=args.redraw, precision=args.precision, init=args.init,
                    lr=float(bundle.meta["model"]["lr"]))
    if redraw is not None:
        training.update(redraws=redraw.draws, redraw_wait_seconds=redraw.waited)
    training.update(n_train=n_train, n_val=n_val, batch_size=args.batch_size)
    report["training"] = training
    print(f"training: {n_train} samples x {training['epochs']} epochs in {training['seconds']:.1f} s = "
          f"{training['samples_per_s']:.0f} samples/s on {args.device} (incl. validation); best epoch "
          f"{training['best_epoch']} (val AUC {training['best_val_auc']:.4f})"
          + (f"; {redraw.draws} re-draws, {redraw.waited:.1f} s waited for them" if redraw is not None else ""))

    x_test = torch.as_tensor(x_test, device=args.device)
    scores = cnn_test_scores(net, x_test, 1024, args.precision)
    t1 = time.perf_counter()
    scores.update(matched_filter_scores(bundle, whitener, raw_test, args.device, bank=not args.no_bank))
    report["matched_filter_seconds"] = time.perf_counter() - t1
    cnn_key = configured_view(bundle.meta["model"])
    summary = report_scores(scores, y_test, snr_test, bundle.meta["model"], cnn_key, args.target,
                            f"test set {n_test} samples ({len(bundle.arrays['test_wave_peak'])} binaries unseen in "
                            f"training), CNN ({cnn_key}) trained on {n_train}")
    print(f"symmetric views averaged: CNN AUC {summary['auc']['cnn_symmetric']:.4f} (one view: {summary['auc']['cnn']:.4f})")
    report.update(n_test=n_test, cnn=cnn_key, **summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gw_device_run.json").write_text(json.dumps(report, indent=1, default=float))
    np.savez(out / "gw_test_scores.npz", **scores, target=y_test, snr=snr_test)
    torch.save(net.state_dict(), out / "gw_1dcnn.pt")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=".gwbundle/bundle.npz")
    ap.add_argument("--out", default="outputs/gw_device_run")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--minutes", type=float, default=6.0, help="training time budget (sets the number of epochs)")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=0, help="use the first n training samples (0: all; val is held out of them)")
    ap.add_argument("--n-test", type=int, default=0, help="use the first n test samples (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rebuild processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.02, help="allowed AUC shortfall of the CNN vs the MF")
    ap.add_argument("--net", default="", help='JSON overrides of the model\'s net, e.g. \'{"head_kernels": [7, 7, 7]}\'')
    ap.add_argument("--preprocessing", default="", help='JSON overrides of the Whitener, e.g. \'{"output_rate": 1024}\'')
    ap.add_argument("--remix", action="store_true",
                    help="pair each training signal with a random noise segment of the training pool in every batch")
    ap.add_argument("--no-bank", action="store_true", help="skip the template-bank matched filter (minutes on a CPU)")
    ap.add_argument("--precision", choices=("32", "bf16"), default="32", help="bf16: autocast (CPU with AVX512-BF16, or GPU)")
    ap.add_argument("--redraw", type=int, default=0, metavar="N",
                    help="every N epochs, re-draw the training samples' extrinsic parameters and noise (0: off)")
    ap.add_argument("--decoys", type=float, default=0.0, metavar="FRACTION",
                    help="share of noise-only training rows given a signal with its merger outside the prior's window, "
                         "labelled noise (Bundle.with_decoys); 0: none")
    ap.add_argument("--decoy-window", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                    help="merger times of the decoys in seconds (default: 0.3 s to 0.1 s before the prior's earliest)")
    ap.add_argument("--init", default=None, metavar="RUN_DIR", help="continue from the weights of a finished run")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the model config's)")
    args = ap.parse_args(argv)
    if args.remix and args.redraw:
        ap.error("--remix and --redraw are alternatives: choose one")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main() -> None:
    run(parse_args())


if __name__ == "__main__":
    main()
