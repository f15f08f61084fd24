"""MLflow review: a real `mlflow server` on 127.0.0.1, a training run logged to it, read back over REST."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from detsim.tracking import server as tracking_server
from detsim.cli.train import train
from prod_support import compose_train, tiny_overrides, tiny_shower_file

PLOTS = [
    "+callbacks.validation_plots._target_=detsim.eval.validation_plots.ValidationPlots",
    "+callbacks.validation_plots.every_n_epochs=1",
    "+callbacks.validation_plots.max_showers=64",
    "+callbacks.validation_plots.n_bins=10",
]
PLOT_DIR = "validation_plots/final"  # written by the VAE's ValidationPlots callback at the end of fitting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(url: str, endpoint: str, payload: dict | None = None, **query: str) -> dict:
    full = f"{url}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(full, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback test server)
        return json.loads(response.read())


@pytest.fixture(scope="module")
def trained_on_server(tmp_path_factory):
    """A real server on a free loopback port, one tiny VAE training logged to it; stopped by PID afterwards."""
    tmp = tmp_path_factory.mktemp("server")
    handle = tracking_server.start(tmp / "state", port=free_port())
    try:
        assert handle.url.startswith("http://127.0.0.1:")
        cfg = compose_train(tiny_overrides(tmp, tiny_shower_file(tmp), tracking_uri=handle.url) + PLOTS)
        train(cfg)
        experiment = rest(handle.url, "experiments/get-by-name", experiment_name="detsim")["experiment"]
        runs = rest(handle.url, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        yield handle, experiment, runs
    finally:
        assert tracking_server.stop(handle.state_dir)
    assert not tracking_server.is_healthy(handle.url)


@pytest.mark.slow
def test_training_against_a_server_is_readable_over_rest(trained_on_server):
    handle, _, runs = trained_on_server
    (run,) = runs
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["model/latent_dim"] == "2" and params["logger/tracking_uri"] == handle.url
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert {"val/loss", "train/loss", "val/kl"} <= set(metrics) and metrics["val/loss"] > 0
    history = rest(handle.url, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="train/loss")
    assert len(history["metrics"]) >= 5  # logged every step
    top = rest(handle.url, "artifacts/list", run_id=run["info"]["run_id"])["files"]
    names = {f["path"] for f in top}
    assert {"config.yaml", "checkpoints"} <= names
    plots = rest(handle.url, "artifacts/list", run_id=run["info"]["run_id"], path=PLOT_DIR).get("files", [])
    assert any(f["path"].endswith(".png") for f in plots)
    # artifacts live in the server's artifact root, not in the client's folder
    assert any((handle.state_dir / "artifacts").rglob("config.yaml"))


def test_server_starts_on_loopback_answers_rest_and_stops_by_pid(tmp_path):
    handle = tracking_server.start(tmp_path / "state", port=free_port())
    try:
        created = rest(handle.url, "experiments/create", {"name": "review"})
        got = rest(handle.url, "experiments/get", experiment_id=created["experiment_id"])
        assert got["experiment"]["name"] == "review"
        assert (tmp_path / "state" / "mlflow.db").is_file()
        assert int((tmp_path / "state" / "server.pid").read_text().split()[0]) == handle.pid
    finally:
        assert tracking_server.stop(handle.state_dir)
    assert not tracking_server.is_healthy(handle.url)
    assert not (tmp_path / "state" / "server.pid").exists()


def test_server_binds_loopback_by_default():
    cmd = tracking_server.server_command(Path("/tmp/x"), "127.0.0.1", 5000)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--backend-store-uri") + 1].startswith("sqlite:///")
    import inspect

    assert inspect.signature(tracking_server.start).parameters["host"].default == "127.0.0.1"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="headless browser check needs Debian's chromium and chromium-driver "
                           "(apt-get install -y chromium chromium-driver)")
def test_run_page_in_headless_chromium(trained_on_server, tmp_path):
    """Open the run's page in headless Chromium and keep screenshots of its metrics and its plots."""
    pytest.importorskip("selenium", reason="pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    handle, experiment, (run,) = trained_on_server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    out = Path(__file__).resolve().parents[1] / "outputs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    base = f"{handle.url}/#/experiments/{experiment['experiment_id']}/runs/{run['info']['run_id']}"
    try:
        driver.get(base)
        WebDriverWait(driver, 180).until(lambda d: "val/loss" in d.find_element(By.TAG_NAME, "body").text)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "train/loss" in body
        driver.save_screenshot(str(out / "mlflow_run_overview.png"))
        plot = next(f["path"] for f in rest(handle.url, "artifacts/list", run_id=run["info"]["run_id"],
                                             path=PLOT_DIR)["files"] if f["path"].endswith(".png"))
        driver.get(f"{base}/artifacts/{plot}")
        WebDriverWait(driver, 180).until(lambda d: d.find_elements(By.CSS_SELECTOR, "img[src^='blob:']"))
        driver.save_screenshot(str(out / "mlflow_run_plot.png"))
        driver.get(f"{base}/model-metrics")
        WebDriverWait(driver, 180).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.main-svg")) >= 2)
        driver.save_screenshot(str(out / "mlflow_run_charts.png"))
    finally:
        driver.quit()
    assert all((out / n).stat().st_size > 10_000 for n in
               ("mlflow_run_overview.png", "mlflow_run_plot.png", "mlflow_run_charts.png"))
