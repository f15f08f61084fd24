"""Load: studies/calo/load_check.py at its smallest size; simulate, train and generate at once on one sqlite
store, then parallel evaluations on one tracking server, every process done and every MLflow run FINISHED."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from prod_support import REPO, cli_env


@pytest.mark.slow
def test_parallel_apps_on_one_store_and_evaluations_on_one_server_all_complete(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "studies" / "calo" / "load_check.py"), "--work", str(tmp_path / "w"),
                           "--showers", "64", "--evaluations", "4", "--timeout", "1200"],
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sqlite = re.search(r"one sqlite store: wall [\d.]+ s, failed processes (\d+), MLflow runs FINISHED (\d+)/(\d+)",
                       done.stdout)
    server = re.search(r"tracking server: wall [\d.]+ s, failed processes (\d+), MLflow runs FINISHED (\d+)/(\d+)",
                       done.stdout)
    assert sqlite and sqlite.groups() == ("0", "2", "2"), done.stdout
    assert server and server.groups() == ("0", "4", "4"), done.stdout
    generated = tmp_path / "w" / "generated.h5"
    from detsim.io import read_showers

    assert read_showers(generated).showers.shape == (64, 368)  # the generator read its model from the busy store
    assert not list(tmp_path.glob("mlruns")) and not (tmp_path / "mlflow.db").exists()
