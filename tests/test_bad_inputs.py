"""A corpus of bad inputs across the detsim CLIs: each one exits 2 with one short message, no traceback, no output.

Every case runs the real Hydra entry point in this process (argv set, `main()` called), so the corpus costs
imports once and then milliseconds per case. The message must name the file or key the user got wrong, the
whole error output stays within 3 lines, and the folder the case ran in holds no new file afterwards.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from detsim.io import write_showers
from detsim.showers import CaloShowers

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _showers(n: int, n_voxels: int, seed: int = 0) -> CaloShowers:
    rng = np.random.default_rng(seed)
    energy = rng.uniform(1e3, 1e5, n)
    return CaloShowers(energy, rng.exponential(energy[:, None] / (2 * n_voxels), (n, n_voxels)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every bad (and one good) input file, built once in a folder of its own."""
    import uproot

    d = tmp_path_factory.mktemp("inputs")
    f = {name: d / name for name in (
        "good.h5", "v367.h5", "v373.h5", "v300.root", "scalar_energy.h5", "rntuple.root", "empty.h5", "text.h5",
        "missing_keys.h5", "lengths.h5", "nan.h5", "negative_energy.h5", "empty.ckpt", "corrupt.ckpt",
        "hdf5.ckpt", "plain_dict.ckpt", "old.ckpt", "zero_rows.h5", "truncated.h5")}
    write_showers(f["good.h5"], _showers(40, 368))
    write_showers(f["v367.h5"], _showers(20, 367))
    write_showers(f["v373.h5"], _showers(20, 373))
    write_showers(f["v300.root"], _showers(20, 300))
    with h5py.File(f["scalar_energy.h5"], "w") as h:
        h["incident_energies"] = 1000.0
        h["showers"] = np.ones((5, 368))
    with uproot.recreate(f["rntuple.root"]) as r:  # `file[name] = {...}` writes an RNTuple in current uproot
        r["tree"] = {"incident_energy": np.ones(3), "showers": np.ones((3, 368))}
    f["empty.h5"].write_bytes(b"")
    f["text.h5"].write_text("energy,voxels\n1,2\n")
    with h5py.File(f["missing_keys.h5"], "w") as h:
        h["energies"] = np.ones((5, 1))
    with h5py.File(f["lengths.h5"], "w") as h:
        h["incident_energies"] = np.ones((5, 1)) * 1e3
        h["showers"] = np.ones((4, 368))
    bad = _showers(10, 368)
    bad.showers[3, 7] = np.nan
    with h5py.File(f["nan.h5"], "w") as h:
        h["incident_energies"], h["showers"] = bad.incident_energy.reshape(-1, 1), bad.showers
    with h5py.File(f["negative_energy.h5"], "w") as h:
        h["incident_energies"], h["showers"] = -np.ones((10, 1)), np.ones((10, 368))
    with h5py.File(f["zero_rows.h5"], "w") as h:
        h["incident_energies"], h["showers"] = np.ones((0, 1)), np.ones((0, 368))
    f["truncated.h5"].write_bytes(f["good.h5"].read_bytes()[:3000])
    f["empty.ckpt"].write_bytes(b"")
    f["corrupt.ckpt"].write_bytes(np.random.default_rng(1).bytes(4096))
    f["hdf5.ckpt"].write_bytes(f["good.h5"].read_bytes())
    torch.save({"state_dict": {"w": torch.zeros(2)}}, f["plain_dict.ckpt"])
    f["old.ckpt"].write_bytes((Path(__file__).parent / "fixtures" / "calo_vae_default_v0.ckpt").read_bytes())
    f["regular_file"] = d / "regular_file"
    f["regular_file"].write_text("not a folder")
    return f


@dataclass(frozen=True)
class Case:
    cli: str
    args: Callable[[dict[str, Path], Path], list[str]]  # (input files, output folder) -> overrides
    names: str  # what the message must contain: the file, key or value at fault


def _train(*extra: str, tracked: bool = False) -> Callable[[dict[str, Path], Path], list[str]]:
    """A tiny CPU training (untracked unless `tracked`), plus the overrides under test (later ones win)."""
    return _a("trainer=cpu", *([] if tracked else ["~logger"]), "data.path={good_h5}", "paths.root_dir={out}",
              "paths.output_dir={out}/run", *extra)


def _a(*items: str) -> Callable[[dict[str, Path], Path], list[str]]:
    """Overrides with `{good_h5}`-style placeholders for the input files and `{out}` for the output folder."""
    return lambda f, out: [i.format(**{k.replace(".", "_"): v for k, v in f.items()}, out=out) for i in items]


GEN = ("ckpt={plain_dict_ckpt}", "reference={good_h5}")
CASES: dict[str, Case] = {
    # detsim-convert: files
    "convert-367-voxels-no-geometry": Case("convert", _a("input={v367_h5}", "output={out}/o.h5"), "367"),
    "convert-373-voxels-no-geometry": Case("convert", _a("input={v373_h5}", "output={out}/o.root"), "368"),
    "convert-300-voxel-ttree": Case("convert", _a("input={v300_root}", "output={out}/o.h5"), "300"),
    "convert-scalar-incident-energies": Case("convert", _a("input={scalar_energy_h5}", "output={out}/o.root"),
                                             "incident_energies"),
    "convert-rntuple-other-name": Case("convert", _a("input={rntuple_root}", "output={out}/o.h5"), "RNTuple"),
    "convert-missing-input": Case("convert", _a("input={out}/absent.h5", "output={out}/o.root"), "absent.h5"),
    "convert-empty-file": Case("convert", _a("input={empty_h5}", "output={out}/o.root"), "empty.h5"),
    "convert-text-as-hdf5": Case("convert", _a("input={text_h5}", "output={out}/o.root"), "text.h5"),
    "convert-truncated-hdf5": Case("convert", _a("input={truncated_h5}", "output={out}/o.root"), "truncated.h5"),
    "convert-missing-keys": Case("convert", _a("input={missing_keys_h5}", "output={out}/o.root"), "showers"),
    "convert-length-mismatch": Case("convert", _a("input={lengths_h5}", "output={out}/o.root"), "same number"),
    "convert-nan-voxel": Case("convert", _a("input={nan_h5}", "output={out}/o.root"), "nan.h5"),
    "convert-negative-energy": Case("convert", _a("input={negative_energy_h5}", "output={out}/o.root"),
                                    "incident_energies"),
    "convert-zero-rows": Case("convert", _a("input={zero_rows_h5}", "output={out}/o.root"), "0 entries"),
    "convert-geometry-mismatch": Case("convert", _a("input={good_h5}", "output={out}/o.root", "geometry=calogan"),
                                      "504"),
    # detsim-convert: outputs and options
    "convert-output-exists": Case("convert", _a("input={good_h5}", "output={v367_h5}"), "overwrite=true"),
    "convert-overwrite-not-a-bool": Case("convert", _a("input={good_h5}", "output={v367_h5}", "overwrite=no"), "overwrite: expected true or false"),
    "convert-output-suffix": Case("convert", _a("input={good_h5}", "output={out}/o.csv"), ".csv"),
    "convert-output-is-input": Case("convert", _a("input={good_h5}", "output={good_h5}", "overwrite=true"), "input"),
    "convert-output-under-file": Case("convert", _a("input={good_h5}", "output={regular_file}/o.root"),
                                      "regular_file"),
    "convert-output-in-proc": Case("convert", _a("input={good_h5}", "output=/proc/o.root"), "/proc"),
    "convert-chunk-size-zero": Case("convert", _a("input={good_h5}", "output={out}/o.root", "chunk_size=0"),
                                    "chunk_size"),
    # detsim-simulate
    "simulate-n-zero": Case("simulate", _a("n=0", "out={out}/s.h5"), "n:"),
    "simulate-n-negative": Case("simulate", _a("n=-5", "out={out}/s.h5"), "-5"),
    "simulate-n-text": Case("simulate", _a("n=abc", "out={out}/s.h5"), "abc"),
    "simulate-n-fraction": Case("simulate", _a("n=1.5", "out={out}/s.h5"), "1.5"),
    "simulate-out-exists": Case("simulate", _a("n=10", "out={good_h5}"), "overwrite=true"),
    "simulate-overwrite-not-a-bool": Case("simulate", _a("n=10", "out={good_h5}", "overwrite=no"), "overwrite: expected true or false"),
    "simulate-out-under-file": Case("simulate", _a("n=10", "out={regular_file}/s.h5"), "regular_file"),
    "simulate-out-in-proc": Case("simulate", _a("n=10", "out=/proc/s.h5"), "/proc"),
    "simulate-out-suffix": Case("simulate", _a("n=10", "out={out}/s.txt"), ".txt"),
    "simulate-chunk-size-zero": Case("simulate", _a("n=10", "out={out}/s.h5", "chunk_size=0"), "chunk_size"),
    "simulate-seed-text": Case("simulate", _a("n=10", "out={out}/s.h5", "seed=abc"), "seed"),
    # detsim-simulate simulator=gw_stream (continuous strain) and detsim-search
    "simulate-gw-stream-duration-missing": Case("simulate", _a("simulator=gw_stream", "out={out}/stream"), "duration"),
    "simulate-gw-stream-duration-negative": Case("simulate", _a("simulator=gw_stream", "duration=-5", "out={out}/stream"), "-5"),
    "simulate-gw-stream-duration-text": Case("simulate", _a("simulator=gw_stream", "duration=abc", "out={out}/stream"), "abc"),
    "simulate-gw-stream-duration-fraction": Case("simulate", _a("simulator=gw_stream", "duration=10.5", "out={out}/stream"),
                                                 "whole number"),
    "simulate-gw-stream-unknown-detector": Case("simulate", _a("simulator=gw_stream", "duration=60", "simulator.detectors=[H1,X1]",
                                                               "out={out}/stream"), "'X1'"),
    "search-strain-not-given": Case("search", _a("method=bank"), "strain"),
    "search-strain-missing": Case("search", _a("method=bank", "strain={out}/absent.hdf"), "absent.hdf"),
    "search-strain-not-mlgwsc-layout": Case("search", _a("method=bank", "strain={good_h5}"), "good.h5"),
    "search-method-unknown": Case("search", _a("method=nope", "strain={good_h5}"), "method"),
    "search-cnn-without-ckpt": Case("search", _a("method=cnn", "strain={good_h5}"), "cnn.ckpt"),
    "search-n-slides-negative": Case("search", _a("method=bank", "strain={good_h5}", "n_slides=-1"), "n_slides"),
    "search-evaluate-without-foreground": Case("search", _a("mode=evaluate"), "foreground"),
    # detsim-generate
    "generate-empty-ckpt": Case("generate", _a("ckpt={empty_ckpt}", "reference={good_h5}", "out={out}/g.h5"),
                                "empty.ckpt"),
    "generate-corrupt-ckpt": Case("generate", _a("ckpt={corrupt_ckpt}", "reference={good_h5}", "out={out}/g.h5"),
                                  "corrupt.ckpt"),
    "generate-hdf5-as-ckpt": Case("generate", _a("ckpt={hdf5_ckpt}", "reference={good_h5}", "out={out}/g.h5"),
                                  "hdf5.ckpt"),
    "generate-hdf5-file-as-ckpt": Case("generate", _a("ckpt={good_h5}", "reference={good_h5}", "out={out}/g.h5"),
                                       "good.h5"),
    "generate-ckpt-not-a-vae": Case("generate", _a("ckpt={plain_dict_ckpt}", "reference={good_h5}",
                                                   "out={out}/g.h5"), "CaloVAE"),
    "generate-ckpt-missing": Case("generate", _a("ckpt={out}/absent.ckpt", "reference={good_h5}", "out={out}/g.h5"),
                                  "absent.ckpt"),
    "generate-ckpt-nonsense": Case("generate", _a("ckpt=not-a-model", "out={out}/g.h5"), "not-a-model"),
    "generate-n-negative": Case("generate", _a(*GEN, "n=-5", "out={out}/g.h5"), "-5"),
    "generate-n-text": Case("generate", _a(*GEN, "n=abc", "out={out}/g.h5"), "abc"),
    "generate-n-zero": Case("generate", _a(*GEN, "n=0", "out={out}/g.h5"), "n:"),
    "generate-out-under-file": Case("generate", _a(*GEN, "out={regular_file}/g.h5"), "regular_file"),
    "generate-out-in-proc": Case("generate", _a(*GEN, "out=/proc/g.h5"), "/proc"),
    "generate-out-exists": Case("generate", _a(*GEN, "out={v367_h5}"), "overwrite=true"),
    "generate-resume-not-a-bool": Case("generate", _a(*GEN, "out={out}/g.h5", "resume=yes"), "resume: expected true or false"),
    "generate-out-suffix": Case("generate", _a(*GEN, "out={out}/g.npy"), ".npy"),
    "generate-old-checkpoint": Case("generate", _a("ckpt={old_ckpt}", "reference={good_h5}", "out={out}/g.h5"),
                                    "detsim-upgrade-checkpoint"),
    "generate-batch-size-zero": Case("generate", _a(*GEN, "out={out}/g.h5", "batch_size=0"), "batch_size"),
    # detsim-upgrade-checkpoint
    "upgrade-in-missing": Case("upgrade_checkpoint", _a("in={out}/absent.ckpt", "out={out}/new.ckpt"), "absent.ckpt"),
    "upgrade-in-corrupt": Case("upgrade_checkpoint", _a("in={corrupt_ckpt}", "out={out}/new.ckpt"), "corrupt.ckpt"),
    "upgrade-in-not-a-vae": Case("upgrade_checkpoint", _a("in={plain_dict_ckpt}", "out={out}/new.ckpt"),
                                 "plain_dict.ckpt"),
    "upgrade-out-exists": Case("upgrade_checkpoint", _a("in={old_ckpt}", "out={v367_h5}"), "overwrite=true"),
    # detsim-evaluate
    "evaluate-out-dir-in-proc": Case("evaluate", _a("reference={good_h5}", "generated={good_h5}",
                                                    "out_dir=/proc/eval"), "/proc"),
    "evaluate-out-dir-under-file": Case("evaluate", _a("reference={good_h5}", "generated={good_h5}",
                                                       "out_dir={regular_file}/eval"), "regular_file"),
    "evaluate-tracking-unreachable": Case("evaluate", _a("reference={good_h5}", "generated={good_h5}",
                                                         "out_dir={out}/eval", f"tracking_uri={UNREACHABLE}"),
                                          "127.0.0.1:9"),
    "evaluate-reference-missing": Case("evaluate", _a("reference={out}/absent.h5", "generated={good_h5}",
                                                      "out_dir={out}/eval", "log_mlflow=false"), "absent.h5"),
    "evaluate-generated-wrong-voxels": Case("evaluate", _a("reference={good_h5}", "generated={v367_h5}",
                                                           "out_dir={out}/eval", "log_mlflow=false"), "v367.h5"),
    "evaluate-reference-empty": Case("evaluate", _a("reference={empty_h5}", "generated={good_h5}",
                                                    "out_dir={out}/eval", "log_mlflow=false"), "empty.h5"),
    # detsim-train
    "train-output-dir-in-proc": Case("train", _train("paths.output_dir=/proc/run"), "/proc/run"),
    "train-output-dir-under-file": Case("train", _train("paths.output_dir={regular_file}/run"), "regular_file"),
    "train-ckpt-missing": Case("train", _train("ckpt_path={out}/absent.ckpt"), "absent.ckpt"),
    "train-ckpt-corrupt": Case("train", _train("ckpt_path={corrupt_ckpt}"), "corrupt.ckpt"),
    "train-tracking-unreachable": Case("train", _train(f"logger.tracking_uri={UNREACHABLE}", tracked=True),
                                       "127.0.0.1:9"),
    # Hydra's own override errors and OmegaConf's config errors, in every app
    "simulate-unknown-key": Case("simulate", _a("nosuchkey=1", "out={out}/s.h5"), "nosuchkey=1"),
    "train-unknown-nested-key": Case("train", _train("trainer.max_epochz=3"), "did you mean max_epochs"),
    "simulate-group-option-missing": Case("simulate", _a("geometry=nope", "out={out}/s.h5"), "calogan"),
    "train-group-option-missing": Case("train", _train("trainer=gpux"), "slurm_ddp"),
    "simulate-hydra-group-option-missing": Case("simulate", _a("hydra/launcher=nope", "out={out}/s.h5"), "basic"),
    "generate-malformed-override": Case("generate", _a(*GEN, "n=[1,", "out={out}/g.h5"), "n=[1,"),
    "train-override-without-value": Case("train", _train("trainer"), "missing EQUAL"),
    "convert-append-existing-key": Case("convert", _a("input={good_h5}", "output={out}/o.root", "+chunk_size=5"),
                                        "++chunk_size"),
    "evaluate-delete-missing-key": Case("evaluate", _a("reference={good_h5}", "generated={good_h5}", "~nosuch",
                                                       "out_dir={out}/eval"), "~nosuch"),
    "generate-ckpt-not-given": Case("generate", _a("reference={good_h5}", "out={out}/g.h5"), "ckpt=..."),
    "convert-input-not-given": Case("convert", _a("output={out}/o.root"), "input"),
    "evaluate-interpolation-unresolved": Case("evaluate", _a("reference=${{nosuch}}", "generated={good_h5}",
                                                             "out_dir={out}/eval", "log_mlflow=false"), "nosuch"),
    "simulate-required-key-removed": Case("simulate", _a("~out"), "out"),
}


def _run(cli: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> int | str | None:
    module = importlib.import_module(f"detsim.cli.{cli}")
    monkeypatch.setattr(sys, "argv", [f"detsim-{cli}", *overrides, "hydra/job_logging=disabled",
                                      "hydra/hydra_logging=disabled"])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    return stopped.value.code


def _tree(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_in_one_short_message(name, files, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    for var in ("MLFLOW_TRACKING_URI", "DETSIM_DEBUG", "HYDRA_FULL_ERROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    inputs_before = _tree(files["good.h5"].parent)
    code = _run(case.cli, case.args(files, tmp_path), monkeypatch)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and 1 <= len(lines) <= 3, err
    assert lines[-1].startswith("detsim error: ") and case.names in lines[-1], lines[-1]
    assert _tree(tmp_path) == set(), f"left behind: {sorted(_tree(tmp_path))}"
    assert _tree(files["good.h5"].parent) == inputs_before


def test_the_corpus_covers_every_cli_with_40_cases():
    clis = {case.cli for case in CASES.values()}
    assert {"simulate", "convert", "train", "generate", "evaluate"} <= clis
    assert len(CASES) >= 40


def test_debug_keeps_hydras_full_traceback_and_no_env_is_left_behind(tmp_path, monkeypatch):
    from hydra.errors import ConfigCompositionException

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("DETSIM_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["detsim-simulate", "nosuchkey=1", f"out={tmp_path}/s.h5"])
    with pytest.raises(ConfigCompositionException, match="nosuchkey"):
        importlib.import_module("detsim.cli.simulate").main()
    monkeypatch.delenv("DETSIM_DEBUG")
    with pytest.raises(SystemExit):
        importlib.import_module("detsim.cli.simulate").main()
    assert "HYDRA_FULL_ERROR" not in os.environ
