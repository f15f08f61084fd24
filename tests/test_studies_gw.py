"""The G2Net study (studies/gw/): the pycbc-free rebuild of synthetic GW samples (injections -> samples) reproduces
what the pycbc simulator would make (same signal, requested SNR, same matched-filter statistic); the CNN trains
through GWClassifier and Lightning; ensembles, re-scoring, the bank search and int8 packing do what they say."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from studies.gw import bank_search, cnn_training, ensemble, injections, int8_waveforms, redraw, rescore, samples, templates
from studies.gw import cnn_vs_matched_filter as study


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("gwbundle") / "bundle.npz"
    injections.build_bundle(path, n_train=24, n_test=12, k_train=3, k_test=3, seed=3, progress=False)
    return samples.Bundle.load(path)


def _pycbc_signal(bundle, split: str, i: int) -> np.ndarray:
    """The simulator's chain with pycbc polarisations at the sample's own inclination and phase."""
    from detsim.gw.synth import scaled_signal
    from detsim.gw.waveform import polarisations

    a, sim = bundle.arrays, bundle.sim
    mass1, mass2, spin1z, spin2z = map(float, a[f"{split}_wave_intrinsic"][a[f"{split}_wave"][i]])
    params = dict(mass1=mass1, mass2=mass2, spin1z=spin1z, spin2z=spin2z, distance=1.0,
                  inclination=float(a[f"{split}_inclination"][i]), coa_phase=float(a[f"{split}_coa_phase"][i]))
    pol = polarisations(params, sim["approximant"], float(sim["sample_rate"]), float(sim["f_lower"]))
    signal, _, _ = scaled_signal(pol, a[f"{split}_f_plus"][i], a[f"{split}_f_cross"][i],
                                 a[f"{split}_t_merger"][i] + a[f"{split}_delay"][i], float(a[f"{split}_snr"][i]),
                                 bundle.psds("snr"), int(bundle.meta["n_samples"]), float(sim["sample_rate"]),
                                 float(sim["snr_f_lower"]))
    return signal


def test_rebuilt_signal_matches_pycbc_and_requested_snr(bundle):
    from pycbc.filter import sigma
    from pycbc.types import FrequencySeries, TimeSeries

    fs, f_low = float(bundle.sim["sample_rate"]), float(bundle.sim["snr_f_lower"])
    for split in ("train", "test"):
        for i in range(4):
            signal, _ = samples.rebuild_signal(bundle, split, i)
            reference = _pycbc_signal(bundle, split, i)
            assert np.sqrt(np.sum((signal - reference) ** 2) / np.sum(reference**2)) < 1e-2
            network = np.sqrt(sum(
                sigma(TimeSeries(s, delta_t=1 / fs), psd=FrequencySeries(psd, delta_f=fs / len(s)),
                      low_frequency_cutoff=f_low) ** 2 for s, psd in zip(signal, bundle.psds("snr"))))
            assert network == pytest.approx(float(bundle.arrays[f"{split}_snr"][i]), rel=0.05)
    strain, snr = samples.rebuild_sample(bundle, "test", 0)
    assert strain.shape == (3, 4096) and np.isfinite(strain).all()
    assert (snr > 0) == bool(bundle.arrays["test_target"][0])


def test_numpy_matched_filter_agrees_with_pycbc_templates(bundle):

    a = bundle.arrays
    train, _ = samples.rebuild_split(bundle, "train", bundle.size("train"), workers=1, progress=False)
    whitener = samples.whitener_of(bundle)
    whitener.fit(train[a["train_target"] == 0])
    test, snr = samples.rebuild_split(bundle, "test", bundle.size("test"), workers=1, progress=False)
    mf = templates.matched_filter(bundle, whitener, "cpu")
    numpy_scores = mf.own_template_scores(test, lambda sl: templates.true_template_waves(bundle, "test", sl))
    params = [dict(zip(("mass1", "mass2", "spin1z", "spin2z"), map(float, a["test_wave_intrinsic"][w])))
              for w in a["test_wave"]]
    np.testing.assert_allclose(numpy_scores, mf.true_scores(test, params), rtol=0.02)
    signal = a["test_target"] == 1
    assert signal.any() and (~signal).any()
    assert np.all(snr[~signal] == 0) and np.all(snr[signal] > 3.9)


def test_noise_and_signal_parts_add_up_to_the_sample_and_whiten_linearly(bundle):
    """--remix pairs whitened signals with other whitened noise: valid only if parts sum to the sample
    and whitening is linear."""

    parts, snr_parts = samples.rebuild_split(bundle, "train", 12, workers=1, progress=False, parts=True)
    whole, snr_whole = samples.rebuild_split(bundle, "train", 12, workers=1, progress=False)
    np.testing.assert_allclose(parts[:, 0] + parts[:, 1], whole, rtol=1e-6, atol=1e-6 * np.abs(whole).max())
    np.testing.assert_array_equal(snr_parts, snr_whole)
    labels = bundle.arrays["train_target"][:12] == 1
    assert np.all(parts[~labels, 1] == 0) and np.all(np.abs(parts[labels, 1]).max(axis=(1, 2)) > 0)
    whitener = samples.whitener_of(bundle)
    whitener.fit(parts[~labels, 0])
    summed = whitener(parts[:, 0]) + whitener(parts[:, 1])
    np.testing.assert_allclose(summed, whitener(whole), atol=1e-4)


def test_redrawn_training_set_is_a_fresh_draw_of_the_same_priors(bundle):
    """--redraw: each independently drawn group is permuted on its own among the first n training rows
    (sky position, polarisation and their antenna responses together), labels and validation rows stay,
    the noise is new, and the rebuilt signals carry the re-drawn SNRs."""
    n, a = 16, bundle.arrays
    again = bundle.redrawn(n, draw=1)
    b = again.arrays
    np.testing.assert_array_equal(b["train_target"], a["train_target"])
    sky = np.argsort(a["train_ra"][:n])[np.argsort(np.argsort(b["train_ra"][:n]))]   # row of a each new row came from
    for key in ("dec", "polarization", "f_plus", "f_cross", "delay"):
        np.testing.assert_array_equal(b[f"train_{key}"][:n], a[f"train_{key}"][:n][sky])
    for key in ("wave", "inclination", "coa_phase", "t_merger", "snr", "ra", "f_plus"):
        np.testing.assert_array_equal(np.sort(b[f"train_{key}"][:n], axis=0), np.sort(a[f"train_{key}"][:n], axis=0))
        np.testing.assert_array_equal(b[f"train_{key}"][n:], a[f"train_{key}"][n:])
    assert not np.array_equal(np.argsort(b["train_inclination"][:n]), np.argsort(b["train_snr"][:n]))
    assert not np.array_equal(b["train_snr"][:n], a["train_snr"][:n])
    old, _ = samples.rebuild_parts(bundle, "train", 0)
    new, _ = samples.rebuild_parts(again, "train", 0)
    assert np.abs(new[0] - old[0]).max() > 0.1 * np.abs(old[0]).max()            # fresh noise
    for i in np.flatnonzero(b["train_target"][:n] == 1)[:3]:
        _, snr = samples.rebuild_sample(again, "train", int(i))
        assert snr == pytest.approx(float(b["train_snr"][i]), rel=0.02)


def test_bundled_bank_scores_like_the_pycbc_bank(bundle):
    """The bank stored in the bundle gives the template-bank matched filter without pycbc."""
    from detsim.gw.template_bank import bank_parameters

    train, _ = samples.rebuild_split(bundle, "train", bundle.size("train"), workers=1, progress=False)
    whitener = samples.whitener_of(bundle)
    whitener.fit(train[bundle.arrays["train_target"] == 0])
    test, _ = samples.rebuild_split(bundle, "test", 6, workers=1, progress=False)
    mf = templates.matched_filter(bundle, whitener, "cpu")
    bank = bank_parameters(bundle.meta["bank"], bundle.sim["priors"])
    waves = templates.template_waves(bundle, "bank", range(len(bundle.arrays["bank_wave_merger"])))
    assert len(waves) == len(bank) > 100
    np.testing.assert_allclose(mf.wave_bank_scores(test, waves), mf.bank_scores(test, bank), rtol=0.02)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three one-epoch device runs on one bundle: two seeds on the same test set, one on a shorter test set."""
    root = tmp_path_factory.mktemp("gwruns")
    path = root / "bundle.npz"
    injections.build_bundle(path, n_train=80, n_test=24, k_train=3, k_test=3, seed=5, progress=False)
    common = ["--bundle", str(path), "--device", "cpu", "--workers", "1", "--max-epochs", "1", "--minutes", "0.01",
              "--no-bank", "--batch-size", "32"]
    for name, extra in {"seed1": ["--seed", "1"], "seed2": ["--seed", "2"], "short": ["--n-test", "16"]}.items():
        study.run(study.parse_args(common + extra + ["--out", str(root / name)]))
    return root


def test_ensemble_averages_member_logits_on_one_test_set(runs):
    """The ensemble score is the mean of the members' configured CNN scores, judged against the same matched filter."""
    from detsim.metrics.roc import roc_auc

    report = ensemble.main([str(runs / "seed1"), str(runs / "seed2"), "--out", str(runs / "ens")])
    members = [ensemble.RunScores.load(runs / name) for name in ("seed1", "seed2")]
    mean = (members[0].scores["cnn_symmetric"] + members[1].scores["cnn_symmetric"]) / 2
    assert not np.allclose(members[0].scores["cnn_symmetric"], members[1].scores["cnn_symmetric"])
    target = members[0].scores["target"]
    assert report["auc"]["cnn_ensemble"] == pytest.approx(roc_auc(target, mean))
    assert report["auc"]["mf_true"] == pytest.approx(members[0].report["auc"]["mf_true"])
    assert report["gap"] == pytest.approx(report["auc"]["cnn_ensemble"] - report["auc"]["mf_true"])
    assert (runs / "ens" / "gw_ensemble.json").is_file()
    by_mass = report["chirp_mass_table"]
    snr, mchirp = members[0].scores["snr"], ensemble.chirp_masses_of_test_set(ensemble.Bundle.load(runs / "bundle.npz"), len(target))
    in_table = target.astype(bool) & (snr >= 6) & (snr < 10) & (mchirp >= 5) & (mchirp < 50)
    ens_rows = [r for r in by_mass if r["detector"] == "cnn_ensemble" and r["snr_bin"] != "all"]
    assert sum(r["n_signal"] for r in ens_rows) == in_table.sum()
    one_view = ensemble.main([str(runs / "seed1"), str(runs / "seed2"), "--view", "one"])
    assert one_view["auc"]["cnn_ensemble"] == pytest.approx(
        roc_auc(target, (members[0].scores["cnn"] + members[1].scores["cnn"]) / 2))


def test_chirp_mass_of_equal_and_unequal_masses():
    from detsim.gw.template_bank import chirp_mass

    assert chirp_mass(30.0, 30.0) == pytest.approx(30.0 * 2 ** -0.2)     # equal masses: m / 2^(1/5)
    assert chirp_mass(np.array([36.0]), np.array([29.0]))[0] == pytest.approx(28.1, abs=0.05)   # GW150914's source frame


def test_ensemble_refuses_runs_on_different_test_sets(runs):
    with pytest.raises(ValueError, match="another test set"):
        ensemble.ensemble_scores([ensemble.RunScores.load(runs / name) for name in ("seed1", "short")])
    with pytest.raises(ValueError, match="at least one"):
        ensemble.ensemble_scores([])
    with pytest.raises(FileNotFoundError, match="not a cnn_vs_matched_filter run folder"):
        ensemble.RunScores.load(runs)


def test_packed_bundle_rounds_training_waves_and_keeps_the_test_split(bundle, tmp_path):
    """studies/gw/int8_waveforms.py: int8 training waveforms within half a step of the float16 ones, a rounding
    error far below the injected SNR, and the test split, PSDs and configs untouched."""
    pack = int8_waveforms
    full_path = tmp_path / "full.npz"
    np.savez(full_path, **bundle.arrays, config_json=np.array(__import__("json").dumps(bundle.meta)))
    sizes = pack.main([str(full_path), str(tmp_path / "packed.npz"), "--drop-bank", "--check", "8"])
    packed = samples.Bundle.load(tmp_path / "packed.npz")
    assert packed.arrays["train_wave_data"].dtype == np.int8 and sizes["packed_mib"] < sizes["full_mib"]
    assert not any(k.startswith("bank_") for k in packed.arrays)
    for wave in range(len(bundle.arrays["train_wave_merger"])):
        exact, merger = bundle.plus0("train", wave)
        rounded, packed_merger = packed.plus0("train", wave)
        assert packed_merger == merger
        np.testing.assert_allclose(rounded, exact, atol=0.51 * np.abs(exact).max() / pack.INT8_PEAK)
    for key in (k for k in bundle.arrays if k.startswith(("test_", "psd_"))):
        np.testing.assert_array_equal(packed.arrays[key], bundle.arrays[key])
    err = pack.rounding_snr(bundle, packed, 8)
    labelled = bundle.arrays["train_snr"][bundle.arrays["train_target"] == 1][:8]
    assert np.all(err > 0) and np.all(err < 0.05 * labelled)
    with pytest.raises(ValueError, match="packed already"):
        pack.main([str(tmp_path / "packed.npz"), str(tmp_path / "again.npz")])


def test_redrawer_prefetches_the_serial_redraw(bundle):
    """Redrawer: the set a pool of processes re-draws and whitens ahead of time is the one the serial path builds."""
    n = 16
    train, _ = samples.rebuild_split(bundle, "train", n, workers=1, progress=False)
    whitener = samples.whitener_of(bundle)
    whitener.fit(train[bundle.arrays["train_target"][:n] == 0])
    redrawer = redraw.Redrawer(bundle, n, whitener, every=2, workers=2, block=5)
    try:
        got = redrawer(2)
        assert set(redrawer.pending) == {4} and redrawer.draws == 1
    finally:
        redrawer.close()
    assert redrawer.pending[4].ready()       # the queued re-draw drained; the pool joined without a deadlock
    serial, _ = samples.rebuild_split(bundle.redrawn(n, 2), "train", n, workers=1, progress=False)
    np.testing.assert_allclose(got, whitener(serial), atol=1e-4)   # the serial path rounds raw strain to float32 first
    assert not np.allclose(got, whitener(train), atol=0.1)


def test_planned_epochs_fit_the_time_budget():
    assert cnn_training.planned_epochs(1, 10.0, 60.0, 100) == 6          # 10 s per epoch, 50 s left: 5 more
    assert cnn_training.planned_epochs(3, 45.0, 60.0, 100) == 4          # slowed to 15 s per epoch: one more
    assert cnn_training.planned_epochs(5, 80.0, 60.0, 100) == 5          # over budget: stop after this epoch
    assert cnn_training.planned_epochs(1, 0.1, 60.0, 8) == 8             # capped by max_epochs


def test_the_gpu_side_imports_without_pycbc_hydra_or_mlflow():
    """The GPU image has numpy, torch, lightning and h5py but no pycbc, Hydra, OmegaConf or MLflow: the modules that
    run there import none of them (the pycbc side, `injections`, and the CPU-side `bank_search`/`combine` may)."""
    import subprocess
    from pathlib import Path

    blocked = ["pycbc", "lal", "hydra", "omegaconf", "mlflow", "uproot"]
    gpu_side = ["cnn_vs_matched_filter", "samples", "redraw", "templates", "cnn_training", "auc_gap", "ensemble",
                "rescore", "int8_waveforms"]
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
            + "".join(f"import studies.gw.{name}\n" for name in gpu_side) + "print('imported')")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr


def test_rescore_reproduces_a_run_on_its_own_test_set_and_refuses_other_configs(runs, tmp_path):
    """rescore: the re-fitted whitener and the loaded network give the run's own test scores back; a test
    bundle drawn with another preprocessing config is refused."""
    import json

    out = tmp_path / "rescored"
    results = rescore.main([str(runs / "seed1"), "--test-bundle", str(runs / "bundle.npz"), "--workers", "1",
                            "--out", str(out)])
    own, again = ensemble.RunScores.load(runs / "seed1"), ensemble.RunScores.load(out / "seed1")
    for key in ("cnn", "cnn_symmetric", "mf_true", "target", "snr"):
        np.testing.assert_allclose(again.scores[key], own.scores[key], rtol=1e-4, atol=1e-4)
    assert results[str(runs / "seed1")]["gap_se"] > 0
    banked = rescore.main([str(runs / "seed1"), "--test-bundle", str(runs / "bundle.npz"), "--workers", "1", "--bank",
                           "--n-test", "12", "--out", str(tmp_path / "banked")])[str(runs / "seed1")]
    bank_key = next(k for k in banked["auc"] if k.startswith("mf_bank"))
    assert int(bank_key[7:]) > 100 and banked["auc"][bank_key] <= banked["auc"]["mf_true"] + 0.05
    # a run with its own preprocessing is re-scored with it
    study.run(study.parse_args(["--bundle", str(runs / "bundle.npz"), "--device", "cpu", "--workers", "1", "--max-epochs", "1",
                                "--minutes", "0.01", "--no-bank", "--batch-size", "32", "--preprocessing", '{"f_high": 300.0}',
                            "--out", str(tmp_path / "narrow")]))
    rescore.main([str(tmp_path / "narrow"), "--test-bundle", str(runs / "bundle.npz"), "--workers", "1", "--out", str(out)])
    np.testing.assert_allclose(ensemble.RunScores.load(out / "narrow").scores["cnn"],
                               ensemble.RunScores.load(tmp_path / "narrow").scores["cnn"], rtol=1e-4, atol=1e-4)
    with np.load(runs / "bundle.npz") as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["config_json"]))
    meta["preprocessing"]["f_high"] = 400.0
    arrays["config_json"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(ValueError, match=r"preprocessing configs differ in \['f_high'\]"):
        rescore.main([str(runs / "seed1"), "--test-bundle", str(tmp_path / "other.npz"), "--workers", "1",
                      "--out", str(out)])
    with pytest.raises(FileNotFoundError, match="not a cnn_vs_matched_filter run folder"):
        rescore.main([str(runs), "--test-bundle", str(runs / "bundle.npz"), "--out", str(out)])


def test_a_run_swaps_in_redrawn_training_sets(runs, tmp_path):
    """--redraw 1: every epoch after the first trains on a set the Redrawer prepared while the previous one trained."""
    report = study.run(study.parse_args(["--bundle", str(runs / "bundle.npz"), "--device", "cpu", "--workers", "2",
                                     "--max-epochs", "3", "--minutes", "5", "--no-bank", "--batch-size", "32",
                                     "--redraw", "1", "--out", str(tmp_path / "redraw")]))
    training = report["training"]
    assert training["epochs"] == 3 and training["redraws"] == 2 and training["redraw_wait_seconds"] >= 0
    assert len(training["history"]) == 3 and all(np.isfinite(h["loss"]) for h in training["history"])


def test_decoys_are_signals_outside_the_merger_window_labelled_noise(bundle):
    """Bundle.with_decoys: the chosen share of noise-only training rows carries its drawn signal with the merger at a
    time the prior excludes, its label stays 0, and a re-draw (`redrawn`) draws decoys again without moving any
    real signal's merger out of the prior's window."""
    n = bundle.size("train")
    window = [0.3, 0.9]
    decoyed = samples.Bundle(bundle.arrays, {**bundle.meta, "decoys": {"fraction": 0.5, "window": window}})
    first = decoyed.with_decoys(n)
    target, decoy = first.arrays["train_target"][:n], first.arrays["train_decoy"][:n]
    assert decoy.sum() == round(0.5 * np.sum(target == 0)) > 0 and not np.any(decoy & (target == 1))
    t = first.arrays["train_t_merger"][:n]
    assert np.all((t[decoy] >= window[0]) & (t[decoy] <= window[1]))
    np.testing.assert_array_equal(t[~decoy], bundle.arrays["train_t_merger"][:n][~decoy])
    i = int(np.flatnonzero(decoy)[0])
    parts, _ = samples.rebuild_parts(first, "train", i)
    plain, _ = samples.rebuild_parts(bundle, "train", i)
    np.testing.assert_array_equal(parts[0], plain[0])                    # the same noise
    assert not plain[1].any() and parts[1].any()                         # plus a signal ...
    peak = np.argmax(np.abs(parts[1]).max(axis=0)) / float(bundle.sim["sample_rate"])
    assert abs(peak - t[i]) < 0.05                                       # ... that merges at the decoy time
    low, high = (float(bundle.sim["priors"]["t_merger"][k]) for k in ("low", "high"))
    again = decoyed.redrawn(n, draw=1)
    t2, decoy2, target2 = again.arrays["train_t_merger"][:n], again.arrays["train_decoy"][:n], again.arrays["train_target"][:n]
    assert not np.array_equal(decoy2, decoy) and not np.any(decoy2 & (target2 == 1))
    assert np.all((t2[~decoy2] >= low) & (t2[~decoy2] <= high)) and np.all(t2[decoy2] <= window[1])


def test_a_run_with_decoys_whitens_like_one_without(runs, tmp_path):
    """--decoys: decoy rows carry signals, so the whitener is fitted on the noise of the noise-only rows as a run
    without decoys (and rescore) fits it: the true-template matched filter scores the test set identically."""
    report = study.run(study.parse_args(["--bundle", str(runs / "bundle.npz"), "--device", "cpu", "--workers", "1",
                                     "--max-epochs", "1", "--minutes", "0.01", "--no-bank", "--batch-size", "32",
                                     "--seed", "1", "--decoys", "0.5", "--out", str(tmp_path / "decoys")]))
    assert report["decoys"] == 0.5
    np.testing.assert_allclose(ensemble.RunScores.load(tmp_path / "decoys").scores["mf_true"],
                               ensemble.RunScores.load(runs / "seed1").scores["mf_true"], rtol=1e-6)
    with pytest.raises(SystemExit, match="before the prior's earliest merger"):
        study.run(study.parse_args(["--bundle", str(runs / "bundle.npz"), "--device", "cpu", "--decoys", "0.5",
                                "--decoy-window", "0.5", "1.5", "--out", str(tmp_path / "bad")]))


def test_a_run_continues_from_a_finished_run(runs, tmp_path):
    """--init: a run continued from another starts from its weights (layers the new network adds, from their initial
    values); weights that do not fit the network are refused."""
    import torch

    seed1 = torch.load(runs / "seed1" / "gw_1dcnn.pt")
    net_cfg = json.loads((runs / "seed1" / study.REPORT).read_text())["net"]
    deeper = {**net_cfg, "branch_channels": [*net_cfg["branch_channels"], net_cfg["branch_channels"][-1]],
              "branch_kernels": [*net_cfg["branch_kernels"], 7], "branch_pools": [*net_cfg["branch_pools"], 1]}
    net = cnn_training.network_of(deeper)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(cnn_training.initial_weights(runs / "seed1", deeper), strict=False)
    torch.testing.assert_close(net.state_dict()["ligo.0.weight"], seed1["ligo.0.weight"])
    added = next(k for k in fresh if k not in seed1 and k.endswith("weight"))
    torch.testing.assert_close(net.state_dict()[added], fresh[added])
    report = study.run(study.parse_args(["--bundle", str(runs / "bundle.npz"), "--device", "cpu", "--workers", "1",
                                     "--max-epochs", "1", "--minutes", "5", "--no-bank", "--batch-size", "32",
                                     "--init", str(runs / "seed1"), "--lr", "1e-5", "--out", str(tmp_path / "more")]))
    assert report["training"]["init"] == str(runs / "seed1") and report["training"]["lr"] == 1e-5
    with pytest.raises(ValueError, match="have no place"):
        cnn_training.initial_weights(runs / "seed1", {**net_cfg, "head_channels": net_cfg["head_channels"][:-1],
                                             "head_kernels": net_cfg["head_kernels"][:-1],
                                             "head_pools": [*net_cfg["head_pools"][:-2], 1]})
    with pytest.raises(FileNotFoundError, match="no gw_1dcnn.pt"):
        cnn_training.initial_weights(tmp_path, net_cfg)


def test_bank_search_scores_a_placed_bank_next_to_the_runs(runs, tmp_path):
    """bank_search places the configured stochastic bank, measures its coverage, scores the search with the
    whitener the runs fitted (so its true-template scores are the runs' own) and adds the runs' mean CNN score."""
    search = bank_search
    report = search.main(["--compare", str(runs / "seed1"), str(runs / "seed2"), "--workers", "1", "--coverage", "3",
                          "--bank-override", "n_candidates=150", "minimal_match=0.9", "--prior-draws", "40", "--out", str(tmp_path)])
    k = report["n_templates"]
    with np.load(tmp_path / "gw_test_scores.npz") as data:
        scores = {key: data[key] for key in data.files}
    members = [ensemble.RunScores.load(runs / name).scores for name in ("seed1", "seed2")]
    np.testing.assert_allclose(scores["mf_true"], members[0]["mf_true"], rtol=1e-4)
    np.testing.assert_allclose(scores["cnn_ensemble"], (members[0]["cnn_symmetric"] + members[1]["cnn_symmetric"]) / 2,
                               rtol=1e-6)
    assert {f"mf_bank{k}", f"mf_bank{k}_marginal", f"mf_bank{k}_prior"} <= set(scores) and 10 < k < 150
    assert len((tmp_path / "bank.csv").read_text().splitlines()) == k + 1
    cover = [r for r in report["coverage"] if r["mchirp"] == "all"]
    assert len(cover) == 2 and all(0.5 < r["median"] <= 1.0 + 1e-6 for r in cover)
    combined = f"cnn_ensemble+mf_bank{k}_prior"     # cross-fitted CNN + weighted search (combine)
    assert {(d["a"], d["b"]) for d in report["differences"]} >= {(f"mf_bank{k}", "mf_true"), ("cnn_ensemble", f"mf_bank{k}"),
                                                                 (combined, "mf_true"), (combined, "cnn_ensemble")}
    assert scores[combined].shape == scores["cnn_ensemble"].shape and np.isfinite(scores[combined]).all()
    with pytest.raises(SystemExit, match="--compare"):
        search.main(["--out", str(tmp_path)])
