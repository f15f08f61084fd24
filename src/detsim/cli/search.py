"""`detsim-search`: a gravitational-wave search over continuous strain, and its false-alarm rate and sensitivity.

  detsim-search method=bank strain=stream/foreground.hdf out=fg_bank.hdf
  detsim-search method=cnn cnn.ckpt=model.ckpt strain=stream/background.hdf n_slides=100 out=bg_cnn.hdf
  detsim-search mode=evaluate foreground=fg_cnn.hdf background=bg_cnn.hdf injections=stream/injections.hdf

mode=search runs `detsim.gw.search` (the CNN or the template bank) and writes a trigger file; mode=evaluate reads
the triggers of one search on the data with injections (foreground) and with time slides (background), writes the
sensitive distance vs FAR (sensitivity.csv, sensitivity.png), every injection's statistic and FAR
(injections.csv) and metrics.json into out_dir, logs them to one MLflow run and prints the sensitive distance at the
FARs of `far_per_day` (one per day and one per week by default).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from detsim.cli.app import hydra_app, positive_int
from detsim.config import flag, to_plain
from detsim.errors import ConfigError, DataFileError
from detsim.files import atomic_output, check_output_file
from detsim.gw import search_stats as stats
from detsim.gw.matched_filter import MatchedFilter
from detsim.gw.bank_search import BankSearch
from detsim.gw.search import CNNSearch, load_network, psd_on_grid, run_search
from detsim.gw.strain import expand_paths, read_injections
from detsim.gw.template_bank import chirp_mass, place_bank
from detsim.gw.triggers import read_triggers
from detsim.gw.whiten import Whitener
from detsim.metrics.plots import save_figure
from detsim.tracking import (check_tracking_server, default_artifact_location, flatten_config, log_params,
                             parent_run_tags, prepare_sqlite_store, resolve_tracking_uri)


def shard_out(out: str, shard: int | None) -> str:
    """`out` for shard k: "{shard}" replaced by k, else -NNNN before the suffix."""
    if shard is None:
        return out
    if "{shard}" in out:
        return out.replace("{shard}", f"{shard:04d}")
    path = Path(out)
    return str(path.with_name(f"{path.stem}-{shard:04d}{path.suffix}"))


def read_bank_file(path: str) -> list[dict[str, float]]:
    """Templates (mass1, mass2, spin1z, spin2z) of a pycbc-layout bank file or of a trigger file's `bank` group."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataFileError(path, None, "an HDF5 template bank (mass1, mass2, spin1z, spin2z)", f"unreadable ({exc})") from None
    with handle:
        group = handle["bank"] if "bank" in handle and "mass1" not in handle else handle
        missing = [k for k in ("mass1", "mass2") if k not in group]
        if missing:
            raise DataFileError(path, missing[0], "a template bank with mass1, mass2 (spin1z, spin2z)", "none")
        cols = {k: group[k][()] for k in ("mass1", "mass2", "spin1z", "spin2z") if k in group}
    return [{k: float(v[i]) for k, v in cols.items()} for i in range(len(cols["mass1"]))]


def bank_placer(cfg: DictConfig):
    """(PSD, rate) -> templates placed as conf/gw/bank says, matched on `placement_duration` s of whitened data."""
    mf_cfg, bank_cfg, priors = cfg.matched_filter, to_plain(cfg.bank), to_plain(cfg.priors)

    def place(psd: np.ndarray, rate: float) -> list[dict[str, float]]:
        duration = float(mf_cfg.placement_duration)
        n = int(round(duration * rate))
        whitener = Whitener(sample_rate=rate, f_low=float(mf_cfg.f_low), f_high=float(mf_cfg.f_high), per_detector_scale=False)
        whitener.psd = psd_on_grid(psd, rate, n)
        mf = MatchedFilter(whitener, str(mf_cfg.approximant), float(mf_cfg.f_lower), (0.0, duration),
                           float(bank_cfg["coincidence"]), lag_rate=float(mf_cfg.lag_rate))
        placement = {**bank_cfg, "batch": int(mf_cfg.placement_batch)}
        params, _ = place_bank(placement, priors, lambda p: mf.template_spectra(p, n), mf._lags(n)[0], bool(cfg.progress))
        return params

    return place


def build_search(cfg: DictConfig) -> CNNSearch | BankSearch:
    method = str(cfg.method)
    if method == "cnn":
        if not cfg.cnn.ckpt:
            raise ConfigError("cnn.ckpt: expected a GWClassifier checkpoint (detsim-train experiment=g2net_1dcnn) or "
                              "a state dict of its network, found null")
        mask = to_plain(cfg.cnn.get("input_mask"))
        net = instantiate(cfg.cnn.model.net, **({} if mask is None else {"input_mask": mask}))
        net = load_network(net, str(cfg.cnn.ckpt))
        t_merger = cfg.priors.t_merger
        offset = cfg.cnn.merger_offset
        offset = (float(t_merger.low) + float(t_merger.high)) / 2 if offset is None else float(offset)
        return CNNSearch(net=net, whitening=to_plain(cfg.whitening), window=float(cfg.cnn.window), merger_offset=offset,
                         stride=float(cfg.cnn.stride), batch=positive_int(cfg.cnn.batch, "cnn.batch"),
                         var=float(cfg.cnn.var), symmetric=flag(cfg.cnn.symmetric, "cnn.symmetric"),
                         psd_segment=None if cfg.cnn.psd_segment is None else float(cfg.cnn.psd_segment))
    if method == "bank":
        mf = cfg.matched_filter
        bank = read_bank_file(str(cfg.bank_file)) if cfg.bank_file else None
        return BankSearch(bank=bank, approximant=str(mf.approximant), f_lower=float(mf.f_lower), f_low=float(mf.f_low),
                          f_high=float(mf.f_high), chunk_duration=float(mf.chunk_duration), pad=float(mf.pad),
                          lag_rate=float(mf.lag_rate), bin_lags=positive_int(mf.bin_lags, "matched_filter.bin_lags"),
                          coincidence=float(cfg.bank.coincidence), psd_segment=float(mf.psd_segment),
                          template_batch=positive_int(mf.template_batch, "matched_filter.template_batch"),
                          var=float(mf.var), place=bank_placer(cfg))
    raise ConfigError(f"method: expected cnn or bank, found {method!r}")


def search(cfg: DictConfig) -> str:
    if cfg.strain is None:
        raise ConfigError("strain: expected strain file(s) in the MLGWSC-1 layout (detsim-simulate simulator=gw_stream), found null")
    shard = None if cfg.shard is None else positive_int(cfg.shard, "shard", minimum=0)
    n_shards = None if cfg.n_shards is None else positive_int(cfg.n_shards, "n_shards")
    n_slides = positive_int(cfg.n_slides, "n_slides", minimum=0)
    out = shard_out(str(cfg.out), shard)
    overwrite = flag(cfg.overwrite, "overwrite")
    check_output_file(out, overwrite)
    expand_paths(to_plain(cfg.strain))                     # a missing file fails before the network or bank is built
    engine = build_search(cfg)
    path = run_search(engine, to_plain(cfg.strain), out, n_slides=n_slides, slide=float(cfg.slide),
                      cluster_window=float(cfg.cluster_window), block_duration=float(cfg.block_duration), shard=shard,
                      n_shards=n_shards, device=str(cfg.device), overwrite=overwrite,
                      progress=flag(cfg.progress, "progress"))
    table, attrs = read_triggers([path])
    hours = table["livetime"][0] / 3600.0
    per_hour = f"{attrs['cpu_seconds'] / hours:.0f} CPU-s, {attrs['wall_seconds'] / hours:.0f} s wall" if hours else "-"
    print(f"{attrs['method']} search: {len(table['time'])} triggers, {hours:.3f} h searched at zero lag, "
          f"{table['livetime'][1:].sum() / 3600:.3f} h of time slides; {per_hour} per hour of data "
          f"({n_slides + 1} slide(s), device {attrs['device']}) -> {path}")
    return str(path)


def _far_label(per_day: float) -> str:
    if abs(per_day - 1.0) < 1e-9:
        return "1_per_day"
    if abs(per_day - 1.0 / 7.0) < 1e-9:
        return "1_per_week"
    return f"{per_day:g}_per_day"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    for key in ("foreground", "background", "injections"):
        if cfg.get(key) is None:
            raise ConfigError(f"{key}: expected file(s) for mode=evaluate, found null")
    out_dir = Path(str(cfg.out_dir))
    check_output_file(out_dir / "metrics.json")
    log = flag(cfg.log_mlflow, "log_mlflow")
    uri = resolve_tracking_uri(cfg.get("tracking_uri"))
    if log:
        check_tracking_server(uri, float(cfg.connect_timeout_s))
    fg, fg_attrs = read_triggers(expand_paths(to_plain(cfg.foreground), "trigger file"))
    bg, bg_attrs = read_triggers(expand_paths(to_plain(cfg.background), "trigger file"))
    if fg_attrs.get("method") != bg_attrs.get("method"):
        raise DataFileError(str(cfg.background), "method", f"triggers of the foreground's search ({fg_attrs.get('method')})",
                            str(bg_attrs.get("method")))
    table, inj_attrs = read_injections(expand_paths(to_plain(cfg.injections), "injection file"))
    first_slide = 0 if int(bg_attrs.get("n_injections", 0)) == 0 else 1
    bg_sel = bg["timeslide_id"] >= first_slide
    background, livetime = bg["stat"][bg_sel], float(bg["livetime"][first_slide:].sum())
    if livetime <= 0:
        raise DataFileError(str(cfg.background), "livetime", "time-slid background (n_slides >= 1, or noise-only data)",
                            "no background time")
    inside = stats.contained(table["tc"], fg["analysed_start"], fg["analysed_end"])
    table = {k: v[inside] for k, v in table.items()}
    zero = fg["timeslide_id"] == 0
    inj_stat = stats.injection_stats(fg["time"][zero], fg["stat"][zero], fg["var"][zero], table["tc"],
                                     None if cfg.found_window is None else float(cfg.found_window))
    inner, shell = stats.injection_volumes(table, inj_attrs)
    curve = stats.sensitivity_curve(inj_stat, background, livetime, inner, shell)
    name = str(cfg.name or fg_attrs.get("method"))
    metrics: dict[str, Any] = {"n_injections": int(len(inj_stat)), "background_livetime_days": livetime / stats.DAY,
                               "foreground_livetime_days": float(fg["livetime"][0]) / stats.DAY,
                               "n_background_triggers": int(len(background))}
    lines = []
    for per_day in cfg.far_per_day:
        label = _far_label(float(per_day))
        row = stats.distance_at(float(per_day) / stats.DAY, inj_stat, background, livetime, inner, shell)
        if row is None:
            lines.append(f"  FAR {label.replace('_', ' ')}: not resolved (background of {livetime / stats.DAY:.3g} days)")
            continue
        metrics.update({f"sensitive_distance_at_{label}": row["sensitive_distance"],
                        f"sensitive_distance_error_at_{label}": row["distance_error"],
                        f"found_at_{label}": row["n_found"], f"threshold_at_{label}": row["threshold"]})
        lines.append(f"  FAR {label.replace('_', ' ')}: sensitive distance {row['sensitive_distance']:.0f} +- "
                     f"{row['distance_error']:.0f} Mpc ({row['n_found']} of {row['n_injections']} injections found, "
                     f"statistic > {row['threshold']:.4g})")
    _write_outputs(out_dir, curve, table, inj_stat, background, livetime, metrics, name,
                   {(_far_label(float(f))).replace("_", " "): float(f) / stats.DAY for f in cfg.far_per_day})
    print(f"{name}: {len(inj_stat)} injections, background {livetime / stats.DAY:.3g} days "
          f"({len(background)} triggers), results in {out_dir}/")
    print("\n".join(lines))
    if log:
        run_id = _log_mlflow(cfg, uri, out_dir, metrics)
        print(f"MLflow run {run_id}")
    return metrics


def _write_outputs(out_dir: Path, curve: Mapping[str, np.ndarray], table: Mapping[str, np.ndarray], inj_stat: np.ndarray,
                   background: np.ndarray, livetime: float, metrics: Mapping[str, Any], name: str,
                   marks: Mapping[str, float]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / "sensitivity.csv") as partial, open(partial, "w", newline="") as fh:
        keys = ["far", "far_per_day", "far_per_month", "threshold", "n_found", "sensitive_volume", "volume_error",
                "sensitive_distance", "distance_error"]
        writer = csv.writer(fh)
        writer.writerow(keys)
        writer.writerows(zip(*(curve[k] for k in keys)))
    far = stats.far_of(inj_stat, background, livetime)
    far = np.where(np.isfinite(inj_stat), far, np.inf)
    with atomic_output(out_dir / "injections.csv") as partial, open(partial, "w", newline="") as fh:
        cols = [k for k in ("tc", "mass1", "mass2", "spin1z", "spin2z", "chirp_distance", "distance", "optimal_snr")
                if k in table]
        writer = csv.writer(fh)
        writer.writerow([*cols, "mchirp", "stat", "far"])
        mchirp = chirp_mass(table["mass1"], table["mass2"])
        for i in range(len(inj_stat)):
            writer.writerow([*(table[c][i] for c in cols), mchirp[i], inj_stat[i], far[i]])
    save_figure(stats.curve_figure({name: curve}, marks), out_dir / "sensitivity.png", close=True, dpi=110)
    with atomic_output(out_dir / "metrics.json") as partial:
        partial.write_text(json.dumps(dict(metrics), indent=2))


def _log_mlflow(cfg: DictConfig, uri: str, out_dir: Path, metrics: Mapping[str, Any]) -> str:
    experiment = str(cfg.experiment_name)
    if uri.startswith("sqlite:///"):
        prepare_sqlite_store(uri, experiment)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=default_artifact_location(uri, experiment))
    run = client.create_run(experiment_id, run_name=cfg.get("run_name"),
                            tags={"detsim.task": "search-evaluate", **parent_run_tags()})
    run_id = run.info.run_id
    log_params(client, run_id, flatten_config(cfg))
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    client.log_artifacts(run_id, str(out_dir))
    client.set_terminated(run_id)
    return run_id


@hydra_app("search")
def main(cfg: DictConfig) -> object:
    mode = str(cfg.mode)
    if mode == "search":
        return search(cfg)
    if mode == "evaluate":
        return evaluate(cfg)
    raise ConfigError(f"mode: expected search or evaluate, found {mode!r}")


if __name__ == "__main__":
    main()
