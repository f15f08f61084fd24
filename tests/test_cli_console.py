"""A newcomer's console: `--help` lists only the groups an app uses; batch logs get plain, unwrapped lines with
no third-party tips; `trainer.enable_progress_bar=false` alone turns the bar off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prod_support import cli_env, tiny_overrides, tiny_shower_file


def _help(app: str) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name(app)), "--help"], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_lists_the_groups_each_app_uses_and_no_others() -> None:
    convert = _help("detsim-convert")
    assert "io/root" in convert and "geometry" in convert
    assert "model " not in convert and "trainer" not in convert and "gw/" not in convert
    train = _help("detsim-train")
    assert "model " in train and "trainer " in train and "calo_vae_ds2" in train
    assert "io/root" not in train


def test_batch_log_training_prints_one_plain_line_per_epoch_and_no_tips(tmp_path: Path) -> None:
    data = tiny_shower_file(tmp_path)
    args = [a for a in tiny_overrides(tmp_path, data) if a not in ("trainer.enable_progress_bar=false", "~callbacks.progress_bar")]
    done = subprocess.run([sys.executable, "-m", "detsim.cli.train", *args], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ") and "val/loss" in line]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert "Tip: For seamless" not in out and "LeafSpec" not in out and "mathtext" not in out
    assert not any(line.lstrip().startswith("Epoch ") for line in out.splitlines())  # no live bar in the log


def test_progress_bar_off_needs_one_key(tmp_path: Path) -> None:
    from prod_support import compose_train

    from detsim.cli.train import build_callbacks

    data = tiny_shower_file(tmp_path)
    args = [a for a in tiny_overrides(tmp_path, data) if a != "~callbacks.progress_bar"]
    cfg = compose_train(args)
    import lightning.pytorch as L

    assert not any(isinstance(cb, L.callbacks.ProgressBar) for cb in build_callbacks(cfg))


@pytest.mark.parametrize("piped", [True])
def test_piped_rich_console_does_not_wrap_a_long_command(piped: bool, tmp_path: Path) -> None:
    code = ("from detsim.cli.console import tidy_console; tidy_console()\n"
            "from rich.console import Console\n"
            "Console().print('x' * 150 + ' /a/very/long/path', soft_wrap=False)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.stdout.strip() == "x" * 150 + " /a/very/long/path"
