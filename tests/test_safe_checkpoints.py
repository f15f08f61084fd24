"""Closed holes: every checkpoint load says weights_only=True (so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot
re-open it), and hyper-parameters read back from a checkpoint may name only detsim's own classes."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from detsim.generate import load_generator
from detsim.models.pid import ParticleIdClassifier
from detsim.safe_model import CONFIG_FILE, FORMAT_VERSION, load_model_dir
from detsim.security import DisallowedTargetError, UnsafeCheckpointError, load_checkpoint
from prod_support import PickleExploit, PYTHON, REPO, cli_env

LOAD_CALLS = {"load", "load_from_checkpoint"}          # torch.load, X.load_from_checkpoint
CKPT_CALLS = {"fit", "test", "validate", "predict"}    # trainer.<call>(..., ckpt_path=...)


def _weights_only_true(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def test_every_checkpoint_load_in_the_sources_passes_weights_only_true():
    offenders, seen = [], 0
    for source in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, owner = node.func.attr, node.func.value
            is_torch_load = name == "load" and isinstance(owner, ast.Name) and owner.id == "torch"
            is_lightning = name == "load_from_checkpoint" or (
                name in CKPT_CALLS and any(k.arg == "ckpt_path" for k in node.keywords))
            if is_torch_load or is_lightning:
                seen += 1
                if not _weights_only_true(node):
                    offenders.append(f"{source.relative_to(REPO)}:{node.lineno}")
    assert seen >= 3 and not offenders, offenders  # security.load_checkpoint and the trainer's fit/test


@pytest.fixture()
def planted(tmp_path) -> tuple[Path, Path]:
    """A file named like a CaloVAE checkpoint whose pickle touches a marker file when unpickled."""
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"latent_dim": 2}, "payload": PickleExploit(marker)}, path)
    return path, marker


def test_forced_unsafe_loading_does_not_reach_detsim(planted, monkeypatch):
    path, marker = planted
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load_generator(path)
    assert not marker.exists()
    # the control: a load that leaves weights_only to torch's default does run the planted code here
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        torch.load(path)
    assert marker.exists()


def test_generate_cli_refuses_the_planted_checkpoint_with_forced_unsafe_loading(planted, tmp_path):
    path, marker = planted
    env = cli_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    done = subprocess.run([PYTHON, "-m", "detsim.cli.generate", f"ckpt={path}", f"out={tmp_path / 'g.h5'}",
                           "n=4", "progress=false", f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("detsim error")]
    assert len(lines) == 1 and str(path) in lines[0] and "disallowed pickled object" in lines[0]
    assert not marker.exists() and not (tmp_path / "g.h5").exists()


def _hostile_backbone(marker: Path) -> dict:
    """A real detsim backbone whose nested argument Hydra would call: os.mkdir(marker) at instantiation."""
    return {"_target_": "detsim.models.shower_cnn.build_shower_cnn",
            "channels": {"_target_": "os.mkdir", "path": str(marker)}}


def test_hostile_pid_checkpoint_is_refused_before_hydra_runs_anything(tmp_path):
    marker = tmp_path / "pwned"
    geometry = yaml.safe_load((REPO / "conf" / "geometry" / "calochallenge_ds1_photons.yaml").read_text())
    path = tmp_path / "pid.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0",
                "hyper_parameters": {"geometry": geometry, "backbone": _hostile_backbone(marker)}}, path)
    with pytest.raises(DisallowedTargetError, match=r"backbone.channels._target_.*found 'os.mkdir'"):
        ParticleIdClassifier.load_from_checkpoint(path, weights_only=True)
    assert not marker.exists()
    # the control: handed to Hydra as the module did before the allow-list, the checkpoint runs os.mkdir
    from hydra.utils import instantiate

    instantiate(_hostile_backbone(marker), _partial_=True)
    assert marker.is_dir()


def test_hostile_calo_vae_checkpoint_and_model_config_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "vae.ckpt"
    hostile = {"latent_dim": 2, "prior": {"kind": {"_target_": "os.mkdir", "path": str(marker)}}}
    torch.save({"state_dict": {}, "hyper_parameters": hostile}, ckpt)
    with pytest.raises(DisallowedTargetError, match="prior.kind._target_"):
        load_generator(ckpt)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(
        {"format": FORMAT_VERSION, "model_class": "os.mkdir", "hyper_parameters": {"path": str(marker)}}))
    with pytest.raises(DisallowedTargetError, match="found 'os.mkdir'"):
        load_model_dir(folder)
    assert not marker.exists()
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
