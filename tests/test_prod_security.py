"""Security: pickled code in checkpoints is refused, configs are never evaluated, output paths are checked."""

from __future__ import annotations

import ast
import pathlib
from pathlib import Path

import pytest
import torch

from detsim.cli.train import train
from detsim.errors import DataFileError
from detsim.files import checked_output_dir
from detsim.security import UnsafeCheckpointError, load_checkpoint
from prod_support import PickleExploit, REPO, compose_train, tiny_overrides


@pytest.fixture()
def malicious_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": PickleExploit(marker)}, path)
    return path, marker


def test_malicious_checkpoint_is_rejected_without_running_its_code(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "disallowed pickled object" in str(info.value)
    assert not marker.exists()


def test_plain_checkpoint_loads(tmp_path):
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "epoch": 2, "hyper_parameters": {"lr": 1e-3}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.arange(3.0))


def test_training_refuses_to_resume_from_a_malicious_checkpoint(tmp_path, malicious_checkpoint):
    path, marker = malicious_checkpoint
    cfg = compose_train(tiny_overrides(tmp_path, tmp_path / "unused.h5") + [f"ckpt_path={path}"])
    with pytest.raises(UnsafeCheckpointError):
        train(cfg)
    assert not marker.exists() and not (tmp_path / "mlflow.db").exists()


def test_no_eval_or_exec_in_the_sources():
    offenders = []
    for source in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec"}:
                offenders.append(f"{source.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


def test_output_dir_is_resolved_and_checked(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert checked_output_dir(tmp_path / "link" / ".." / "link" / "run") == real / "run"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataFileError, match="expected a folder"):
        checked_output_dir(tmp_path / "afile")


def test_training_checks_its_run_folder_before_writing(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    cfg = compose_train(tiny_overrides(tmp_path, tmp_path / "unused.h5", out=blocker))
    with pytest.raises(DataFileError, match="run folder"):
        train(cfg)
    assert not (tmp_path / "mlflow.db").exists()
