"""The GW search over continuous strain (issue 25): the stream simulator (MLGWSC-1 layout), the CNN and template-bank
searches, time slides, false-alarm rate and sensitive distance. Tiny streams (tens of seconds at 1024 Hz)."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
import torch

from detsim.config import compose_config
from detsim.errors import ConfigError
from detsim.gw import search_stats as stats
from detsim.gw.bank_search import BankSearch
from detsim.gw.search import (CNNSearch, TorchWhitening, analysis_blocks, check_slides, run_search,
                              slide_positions)
from detsim.gw.strain import StrainReader, read_injections, strain_segments
from detsim.gw.stream import StreamSpec, write_stream
from detsim.gw.whiten import Whitener

GPS = 1238166018
FAST = ["simulator.sample_rate=1024", "simulator.noise_block=16", "simulator.filter_duration=8"]


def stream_spec(duration: int = 64, seed: int = 3, *extra: str) -> StreamSpec:
    cfg = compose_config("simulate", ["simulator=gw_stream", f"duration={duration}", f"seed={seed}", *FAST, *extra])
    return StreamSpec.from_config(cfg)


LOUD = ("simulator.segment_duration=64", "simulator.injections.chirp_distance.low=20",
        "simulator.injections.chirp_distance.high=21", "simulator.injections.padding=20")


@pytest.fixture(scope="module")
def loud(tmp_path_factory):
    """64 s of H1/L1 at 1024 Hz with one loud injection (network SNR ~80) near 24.5 s."""
    spec = stream_spec(64, 3, *LOUD)
    return spec, write_stream(spec, tmp_path_factory.mktemp("loud"), progress=False)


class ExcessPower(torch.nn.Module):
    """A stand-in for a trained network: the loudest 0.125-s average of whitened H1 + L1 power in the window's
    merger range (1.0-1.8 s), so the sliding search's timing, whitening, batching and clustering are tested."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = torch.nn.functional.avg_pool1d((x[:, :2] ** 2).sum(1, keepdim=True), 128, 32)[:, 0]
        n = power.shape[-1]
        return power[:, n * 5 // 10 : n * 9 // 10].amax(-1)


def whitening() -> dict:
    return {k: v for k, v in compose_config("search").whitening.items() if k != "_target_"}


# -- the stream ----------------------------------------------------------------------------------------------------

def test_stream_layout_noise_and_injections(tmp_path):
    spec = stream_spec(64, 5, "simulator.segment_duration=32", "simulator.injections.padding=2")
    files = write_stream(spec, tmp_path / "s", progress=False)
    detectors, segments = strain_segments([files["foreground"]])
    assert detectors == ("H1", "L1") and [s.key for s in segments] == [str(GPS), str(GPS + 32)]
    with h5py.File(files["foreground"]) as fg, h5py.File(files["background"]) as bg:
        ds = fg["H1"][str(GPS + 32)]
        assert ds.attrs["start_time"] == GPS + 32 and ds.attrs["delta_t"] == 1 / 1024 and ds.shape == (32 * 1024,)
        assert fg.attrs["n_injections"] >= 1 and bg.attrs["n_injections"] == 0
        signal = {d: np.concatenate([fg[d][k][()] - bg[d][k][()] for k in sorted(fg[d])]) for d in detectors}
        noise = np.stack([np.concatenate([bg[d][k][()] for k in sorted(bg[d])]) for d in detectors]).astype(np.float64)
    table, attrs = read_injections([files["injections"]])
    assert attrs["min_chirp_distance"] == 130 and attrs["max_chirp_distance"] == 350
    gaps = np.diff(table["tc"])
    assert np.all((gaps >= 24) & (gaps <= 30 + 1e-9)) if len(gaps) else True
    for tc in table["tc"]:        # at least `padding` inside its segment
        seg = (tc - GPS) // 32
        assert GPS + seg * 32 + 2 <= tc <= GPS + (seg + 1) * 32 - 2
    # foreground - background is the injections alone: nothing (1e-4 of the noise) far from every merger
    far = np.ones(64 * 1024, dtype=bool)
    for tc in table["tc"]:
        far[int((tc - GPS - 12) * 1024) : int((tc - GPS + 2) * 1024)] = False
    assert np.abs(signal["H1"][far]).max() < 1e-4 * noise.std() < np.abs(signal["H1"][~far]).max()
    # the noise has the configured PSD in band (Welch over the whole stream, across the segment boundary)
    from scipy.signal import welch

    from detsim.gw.noise import analytic_psd

    f, p = welch(noise, fs=1024, nperseg=4096, axis=-1)
    expected = analytic_psd("aLIGOZeroDetHighPower", 4096, 1024.0, 5.0)
    band = (f > 20) & (f < 500)
    ratio = p[:, band] / expected[band]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    bands = np.array_split(np.arange(ratio.shape[1]), 16)                          # 30-Hz bands
    assert all(abs(np.median(ratio[:, b]) - 1) < 0.25 for b in bands), [np.median(ratio[:, b]) for b in bands]


def test_injection_snr_matches_pycbc_sigma(loud):
    from pycbc.filter import sigma
    from pycbc.types import FrequencySeries, TimeSeries

    from detsim.gw.noise import analytic_psd

    spec, files = loud
    table, _ = read_injections([files["injections"]])
    with h5py.File(files["foreground"]) as fg, h5py.File(files["background"]) as bg:
        for det in ("H1", "L1"):
            signal = fg[det][str(GPS)][()].astype(np.float64) - bg[det][str(GPS)][()]
            n = len(signal)
            psd = FrequencySeries(analytic_psd("aLIGOZeroDetHighPower", n, 1024.0, 5.0), delta_f=1024.0 / n)
            snr = sigma(TimeSeries(signal, delta_t=1 / 1024), psd=psd, low_frequency_cutoff=20.0)
            assert snr == pytest.approx(table[f"optimal_snr_{det}"][0], rel=0.02)


def test_shards_and_resume_give_the_one_stream(tmp_path, monkeypatch):
    import detsim.gw.stream as stream

    whole = write_stream(stream_spec(64, 7, "simulator.segment_duration=32"), tmp_path / "whole", progress=False)
    shards = [write_stream(stream_spec(32, 7, "simulator.segment_duration=32", f"shard={k}"), tmp_path / "sh",
                           progress=False) for k in (0, 1)]
    assert shards[1]["foreground"].name == "foreground-0001.hdf"
    real, calls = stream.write_segment_file, []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "write_segment_file", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_stream(stream_spec(64, 7, "simulator.segment_duration=32"), tmp_path / "resumed", progress=False)
    assert (tmp_path / "resumed" / "foreground.partial" / f"segment_{GPS}.hdf").is_file()
    monkeypatch.setattr(stream, "write_segment_file", real)
    resumed = write_stream(stream_spec(64, 7, "simulator.segment_duration=32"), tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "foreground.partial").exists()
    with h5py.File(whole["foreground"]) as a, h5py.File(resumed["foreground"]) as b:
        for det in ("H1", "L1"):
            for key in a[det]:
                assert np.array_equal(a[det][key][()], b[det][key][()])
            for k, shard in enumerate(shards):
                with h5py.File(shard["foreground"]) as s:
                    key = str(GPS + 32 * k)
                    assert np.array_equal(a[det][key][()], s[det][key][()])
    table, _ = read_injections([whole["injections"]])
    parts, _ = read_injections([s["injections"] for s in shards])
    assert np.array_equal(table["tc"], parts["tc"]) and np.array_equal(table["mass1"], parts["mass1"])


# -- the searches --------------------------------------------------------------------------------------------------

def test_torch_whitening_is_the_training_whitener():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((8, 2, 2048)) * 1e-21
    w = Whitener(sample_rate=1024.0, output_rate=1024.0, per_detector_scale=False).fit(noise)
    tw = TorchWhitening(w, 2048, torch.device("cpu"))
    x = rng.standard_normal((3, 2, 2048)) * 1e-21
    ours = torch.stack([tw(torch.as_tensor(x[:, j]), j) for j in range(2)], 1).numpy()
    assert np.allclose(ours, w(x), atol=1e-5 * np.abs(w(x)).max())


def test_loud_injection_is_found_by_both_searches_at_its_time(loud, tmp_path, monkeypatch):
    spec, files = loud
    table, _ = read_injections([files["injections"]])
    tc = float(table["tc"][0])
    true = {k: float(table[k][0]) for k in ("mass1", "mass2", "spin1z", "spin2z")}
    bank = [true, dict(mass1=12.0, mass2=10.0, spin1z=0.0, spin2z=0.0), dict(mass1=40.0, mass2=35.0, spin1z=0.3, spin2z=0.3)]
    reads = []
    real = StrainReader.read
    monkeypatch.setattr(StrainReader, "read", lambda self, seg, det, a, b: reads.append(b - a) or real(self, seg, det, a, b))
    searches = {"bank": BankSearch(bank=bank, chunk_duration=32, pad=12, psd_segment=4),
                "cnn": CNNSearch(net=ExcessPower(), whitening=whitening(), stride=0.25, batch=64)}
    for name, search in searches.items():
        out = run_search(search, str(files["foreground"]), tmp_path / f"{name}.hdf", progress=False, block_duration=32)
        with h5py.File(out) as h:
            zero = h["timeslide_id"][()] == 0
            loudest = np.argmax(h["stat"][()][zero])
            t, var = h["time"][()][zero][loudest], h["var"][()][zero][loudest]
            others = np.sort(h["stat"][()][zero])[-2]
            assert abs(t - tc) <= var, (name, t - tc)
            assert h["stat"][()][zero][loudest] > 3 * others            # by far the loudest trigger
            assert h["livetime"][0] > 30 and len(h["analysed_start"]) == 2
            if name == "bank":
                assert h["template_id"][()][zero][loudest] == 0 and h["bank/mass1"][0] == true["mass1"]
                assert h["stat"][()][zero][loudest] == pytest.approx(np.hypot(*table_snrs(table)), rel=0.15)
        stat = stats.injection_stats(*read_zero_lag(out), table["tc"])
        assert np.isfinite(stat[0])
    assert max(reads) <= 32 * 1024 + 2 * 1024 + 1024     # a block (+ margins, a window): never the whole stream


def table_snrs(table):
    return table["optimal_snr_H1"][0], table["optimal_snr_L1"][0]


def read_zero_lag(path):
    with h5py.File(path) as h:
        zero = h["timeslide_id"][()] == 0
        return h["time"][()][zero], h["stat"][()][zero], h["var"][()][zero]


def test_time_slides_never_pair_an_injection_with_itself(loud):
    spec, files = loud
    table, _ = read_injections([files["injections"]])
    _, segments = strain_segments([files["foreground"]])
    fs, window, slide = 1024, 2.0, 7.0
    blocks = analysis_blocks(segments, 32.0, quantum=256)
    separation = window + 0.0101 + 1.0
    check_slides(3, slide, [b.length / fs for b in blocks], 2, separation)
    for block in blocks:
        starts = block.start + 256 * np.arange(block.length // 256)
        for k in range(1, 4):
            partner = slide_positions(starts, int(k * slide * fs), block)
            for tc in table["tc"]:
                in_h1 = np.abs(block.time(starts) + 1.4 - tc) <= 1.0          # H1 windows holding the merger
                in_l1 = np.abs(block.time(partner[in_h1]) + 1.4 - tc)         # the L1 windows they are paired with
                assert np.all(in_l1 >= window + 0.0101), (k, tc)
    # the bank slides its binned series with the same wrap-round as the CNN slides its windows
    from detsim.gw.search import Block

    m, n = 3, 20
    series = torch.arange(float(m + n + m))
    for shift in (0, 1, 7, 19):
        moved = slide_positions(np.arange(-m, n + m), shift, Block(blocks[0].segment, 0, n))
        expected = series[m:m + n][moved % n] if shift else series
        assert torch.equal(BankSearch._slid(series, shift, m), expected)
    with pytest.raises(ConfigError, match="coincident with itself"):
        check_slides(10, 3.2, [32.0], 2, separation)          # slide 10 shifts by 32 s: zero modulo the block
    with pytest.raises(ConfigError, match="coincident with itself"):
        check_slides(1, 2.5, [32.0], 2, separation)           # closer than window + travel time + cluster window


# -- false-alarm rate and sensitivity --------------------------------------------------------------------------------

def test_far_of_a_poisson_background_is_recovered():
    rng = np.random.default_rng(1)
    rate, livetime = 0.02, 1e6                      # 20,000 background triggers, stat ~ 5 + Exp(1)
    background = 5.0 + rng.exponential(1.0, rng.poisson(rate * livetime))
    for x in (5.5, 7.0, 9.0, 11.0):
        expected = rate * np.exp(-(x - 5.0))
        sigma = np.sqrt(expected * livetime) / livetime
        assert stats.far_of(np.array([x]), background, livetime)[0] == pytest.approx(expected, abs=4 * sigma)
    # the threshold at a FAR: background louder than it is at most far x livetime
    far = 1e-5
    threshold = stats.threshold_at(far, background, livetime)
    assert np.sum(background > threshold) <= far * livetime < np.sum(background >= threshold) + 1e-9
    assert threshold == pytest.approx(5.0 - np.log(far / rate), abs=0.5)
    assert stats.threshold_at(0.5 / livetime, background, livetime) is None     # not resolved by this background


def test_sensitive_distance_estimator_gives_the_analytic_value():
    rng = np.random.default_rng(2)
    n = 200_000
    m1, m2 = rng.uniform(10, 50, n), rng.uniform(10, 50, n)
    attrs = {"min_chirp_distance": 130.0, "max_chirp_distance": 350.0}
    dc = rng.uniform(130.0**3, 350.0**3, n) ** (1 / 3)
    scale = (stats.chirp_mass(m1, m2) / stats.REFERENCE_CHIRP_MASS) ** (5 / 6)
    table = {"mass1": m1, "mass2": m2, "chirp_distance": dc, "distance": dc * scale}
    inner, shell = stats.injection_volumes(table, attrs)
    # one chirp mass: with a step (every source nearer than D0 found) V = 4/3 pi D0^3 exactly
    one = {"mass1": np.full(n, 30.0), "mass2": np.full(n, 30.0)}
    s = (stats.chirp_mass(30.0, 30.0) / stats.REFERENCE_CHIRP_MASS) ** (5 / 6)
    d0 = 250.0 * s
    volume, error = stats.sensitive_volume(dc * s < d0, *stats.injection_volumes(one, attrs))
    assert volume == pytest.approx(4 / 3 * np.pi * d0**3, abs=4 * error)
    assert stats.radius(volume) == pytest.approx(d0, rel=0.005)
    # a smooth efficiency 1 / (1 + (d / d50)^4): V = int 4 pi d^2 eff(d) dd over the range the injections cover
    from scipy.integrate import quad

    d50 = 1500.0
    found = rng.random(n) < 1 / (1 + (table["distance"] / d50) ** 4)
    volume, error = stats.sensitive_volume(found, inner, shell)
    per_injection = np.array([quad(lambda d: 4 * np.pi * d**2 / (1 + (d / d50) ** 4), 0, 350.0 * s)[0]
                              for s in scale[:2000]])
    ball = 4 / 3 * np.pi * (130.0 * scale[:2000]) ** 3
    shell_part = per_injection - np.array([quad(lambda d: 4 * np.pi * d**2 / (1 + (d / d50) ** 4), 0, 130.0 * s)[0]
                                           for s in scale[:2000]])
    analytic = np.mean(ball + shell_part)
    assert volume == pytest.approx(analytic, abs=4 * error + 0.01 * analytic)


def test_cli_search_and_evaluate(loud, tmp_path, monkeypatch, capsys):
    """detsim-search in both modes through the Hydra app: the bank (placed from a grid), the CNN from a checkpoint,
    slides on the background file, shards, and the evaluation's files and MLflow run."""
    import importlib
    import sys

    import mlflow

    from detsim.gw.cnn import GW1DCNN

    spec, files = loud
    net = dict(branch_channels=[1, 4, 8], head_channels=[8, 8], head_kernels=[7, 7], head_pools=[4, 4], hidden=8)
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in GW1DCNN(**net).state_dict().items()}}, ckpt)
    net_args = [f"cnn.model.net.{k}={v}".replace(" ", "") for k, v in net.items()]
    common = ["block_duration=32", "progress=false", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
              f"hydra.run.dir={tmp_path}/h"]
    bank_args = ["method=bank", "gw/bank@bank=grid", "bank.n_chirp_mass=2", "bank.n_mass_ratio=1", "bank.n_spin=1",
                 "matched_filter.chunk_duration=32", "matched_filter.pad=12", "matched_filter.placement_duration=4"]
    app = importlib.import_module("detsim.cli.search")

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["detsim-search", *args, *common])
        return app.main()

    run(*bank_args, f"strain={files['foreground']}", f"out={tmp_path}/fg.hdf")
    run("method=bank", f"bank_file={tmp_path}/fg.hdf", "matched_filter.chunk_duration=32", "matched_filter.pad=12",
        f"strain={files['background']}", "n_slides=2", f"out={tmp_path}/bg.hdf")
    for k in (0, 1):
        run("method=cnn", f"cnn.ckpt={ckpt}", *net_args, f"strain={files['background']}", "n_slides=1", f"shard={k}",
            "n_shards=2", f"out={tmp_path}/cnn_bg.hdf")
    out = capsys.readouterr().out
    assert "CPU-s" in out and "per hour of data" in out
    with h5py.File(tmp_path / "bg.hdf") as h:
        assert h.attrs["n_slides"] == 2 and set(np.unique(h["timeslide_id"][()])) <= {0, 1, 2} and h["bank/mass1"].shape == (2,)
    with h5py.File(tmp_path / "cnn_bg-0001.hdf") as h:
        assert h.attrs["method"] == "cnn" and h.attrs["shard"] == 1 and h["livetime"].shape == (2,)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run("mode=evaluate", f"foreground={tmp_path}/fg.hdf", f"background={tmp_path}/bg.hdf",
                  f"injections={files['injections']}", f"out_dir={tmp_path}/eval", f"tracking_uri={uri}",
                  "far_per_day=[10000.0,1.0]")
    printed = capsys.readouterr().out
    assert "FAR 1 per day: not resolved" in printed and "FAR 10000 per day: sensitive distance" in printed
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_injections"] == 1 and metrics["found_at_10000_per_day"] == 1
    rows = list(csv.DictReader(open(tmp_path / "eval" / "sensitivity.csv")))
    assert rows and {"far", "far_per_month", "sensitive_distance", "distance_error"} <= set(rows[0])
    assert (tmp_path / "eval" / "sensitivity.png").stat().st_size > 0
    injections = list(csv.DictReader(open(tmp_path / "eval" / "injections.csv")))
    assert float(injections[0]["stat"]) > 20
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run_info,) = client.search_runs(client.get_experiment_by_name("detsim-search").experiment_id)
    assert run_info.data.metrics["found_at_10000_per_day"] == 1
    assert {a.path for a in client.list_artifacts(run_info.info.run_id)} >= {"sensitivity.csv", "sensitivity.png"}


def test_study_compares_the_cnn_with_the_bank(loud, tmp_path, capsys):
    """studies.gw.search_sensitivity (issue 25, points 4-5) on the tiny stream: its plan, and the comparison of two
    searches' triggers (ratio with a bootstrap error, efficiency tables, one plot)."""
    import argparse
    import shutil

    from studies.gw import search_sensitivity as study

    spec, files = loud
    out = tmp_path / "study"
    for tag in ("stream", "stream_precessing"):
        (out / tag).mkdir(parents=True)
        shutil.copy(files["injections"], out / tag / "injections.hdf")
    table, _ = read_injections([files["injections"]])
    bank = [{k: float(table[k][0]) for k in ("mass1", "mass2", "spin1z", "spin2z")}, dict(mass1=30.0, mass2=20.0)]
    searches = {"bank": lambda: BankSearch(bank=bank, chunk_duration=32, pad=12, psd_segment=4),
                "cnn": lambda: CNNSearch(net=ExcessPower(), whitening=whitening(), stride=0.25, batch=64)}
    for name, make in searches.items():
        for tag in ("", "_precessing"):
            run_search(make(), str(files["foreground"]), out / f"fg_{name}{tag}.hdf", progress=False, block_duration=32)
        run_search(make(), str(files["background"]), out / f"bg_{name}.hdf", n_slides=3, progress=False, block_duration=32)
    far = (20000.0, 1 / 7)
    results = {tag: study.compare(out, tag, far, n_boot=50) for tag in ("", "_precessing")}
    study.write_comparison(out, results, far)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["aligned"]["n_injections"] == 1
    assert summary["aligned"]["ratios"]["20000_per_day"]["ratio"] == pytest.approx(1.0)    # both find the loud one
    assert summary["aligned"]["ratios"][f"{1 / 7:g}_per_day"] is None                       # 4 x 40 s of background
    assert (out / "compare.png").stat().st_size > 0 and (out / "efficiency.csv").read_text().count("\n") > 4
    printed = capsys.readouterr().out
    assert "sensitive distance ratio (CNN / bank) at 1 per week: not resolved" in printed
    args = argparse.Namespace(out=str(out), duration=86400, seed=1, device="cpu", cnn="net.pt", stride=0.25, batch=8,
                              symmetric=False, slides=100, slide=7.0, no_mlflow=True)
    plan = study.steps(args)
    assert len(plan) == 13 and any("n_slides=100" in step.argv for step in plan)
    assert study.cost_estimate(24, 100, 1600)["cnn"] == pytest.approx(24 * 17.1 * 103 / 3600)
