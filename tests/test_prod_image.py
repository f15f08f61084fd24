"""The images: requirements.lock (gw extra within pycbc's bounds, no CUDA wheels), Apptainer.def, the entry point.

No container engine runs here; the lock and the definition file are read, and the entry point script both
images share runs on this machine (as an unprivileged user too, where the test runs as root).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from prod_support import REPO
from test_prod_docker import _norm, lock_pins

APPTAINER = REPO / "Apptainer.def"
CUDA = re.compile(r"^(nvidia-|cuda-|triton|pytorch-triton)")


def _sections(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """An Apptainer definition file as (header keywords, {section: its non-empty lines})."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") and current is None:
            continue
        if match := re.match(r"^%(\w+)\s*$", line):
            current = match[1]
            sections[current] = []
        elif current is None:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        else:
            sections[current].append(line.strip())
    return header, sections


def _requirements_hold(requirements: list[str], pins: dict[str, str], extras: set[str] = frozenset()) -> list[str]:
    """The requirements (markers evaluated for this Python, with `extras`) that the pinned versions break."""
    broken = []
    for text in requirements:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        name = _norm(req.name)
        if name in ("torch", "detsim"):
            continue
        if name not in pins or (req.specifier and pins[name] not in req.specifier):
            broken.append(f"{text} (lock: {pins.get(name, 'absent')})")
    return broken


def test_lock_holds_no_cuda_wheels():
    pins = lock_pins()
    assert not sorted(n for n in pins if CUDA.match(n)), "CUDA wheels in the CPU lock"
    assert "torch" not in pins


def test_lock_resolves_the_gw_extra_within_pycbcs_bounds():
    pins = lock_pins()
    assert "pycbc" in pins, "the gw extra (pycbc) is not in requirements.lock"
    try:
        pycbc = distribution("pycbc")
    except PackageNotFoundError:
        pytest.skip("pycbc is not installed here (pip install -e '.[gw]')")
    assert pins["pycbc"] == pycbc.version, "the lock's pycbc differs from the installed one: run `make lock`"
    specs = {_norm(Requirement(r).name): str(Requirement(r).specifier) for r in pycbc.requires or []
             if _norm(Requirement(r).name) in ("numpy", "scipy")}
    assert "<" in specs["numpy"] and "<" in specs["scipy"], specs  # pycbc caps both: the bounds under test
    assert not _requirements_hold(pycbc.requires or [], pins)


def test_lock_satisfies_detsims_own_requirements_with_gw():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = project["dependencies"] + project["optional-dependencies"]["gw"]
    assert not _requirements_hold(needed, lock_pins())


def test_apptainer_builds_like_the_dockerfile_and_runs_detsim():
    header, sections = _sections(APPTAINER.read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    assert header["Bootstrap"] == "docker"
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile, re.M)[1]
    assert header["From"] == base  # the same base image as the Docker build
    arguments = dict(line.split("=", 1) for line in sections["arguments"])
    assert arguments["TORCH_VERSION"] == re.search(r"^ARG TORCH_VERSION=(\S+)", dockerfile, re.M)[1]
    assert arguments["TORCH_INDEX_URL"].endswith("/whl/cpu")
    copied = dict(line.split() for line in sections["files"])
    assert {"requirements.lock", "docker/install.sh", "docker/entrypoint.sh", "src", "conf"} <= set(copied)
    assert all((REPO / source).exists() for source in copied)
    post = " ".join(sections["post"])
    assert "docker/install.sh" in post and "{{ TORCH_INDEX_URL }}" in post
    assert "DETSIM_CONFIG_DIR=/opt/detsim/conf" in " ".join(sections["environment"])
    (runscript,) = sections["runscript"]
    assert runscript == 'exec /opt/detsim/docker/entrypoint.sh "$@"'
    # The runscript, run here with the repository standing in for /opt/detsim: `run X simulate` is detsim-simulate.
    here = runscript.replace("/opt/detsim", str(REPO))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["sh", "-c", here, "runscript", "simulate", "--help"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0 and "detsim-simulate" in done.stdout, done.stderr


def test_entrypoint_gives_a_user_without_a_writable_home_one(tmp_path):
    """`docker run --user <uid>`: a uid with no passwd entry gets HOME=/ (or none it can write); the entry
    point moves HOME under TMPDIR, so matplotlib, MLflow and pip caches have a writable place."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    script = 'echo "$HOME|$MPLCONFIGDIR"; touch "$HOME/probe"'
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "no-such-home"), "TMPDIR": str(tmp)}
    done = subprocess.run(["sh", str(REPO / "docker" / "entrypoint.sh"), "sh", "-c", script], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    home, mpl = done.stdout.strip().split("|")
    assert home == f"{tmp}/detsim-home-{os.getuid()}" and mpl == f"{home}/.config/matplotlib"
    assert (Path(home) / "probe").exists()
