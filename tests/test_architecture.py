"""The room rules of docs/architecture.md hold: import-linter's contracts (pyproject.toml) for the package and the
studies, and an AST check for the folders that are not packages (benchmarks never import each other or tests/;
src never reaches into benchmarks/, pipelines/, studies/ or tests/). Each contract kind is shown able to fail."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the tree at `root` (its src/ and studies/, its pyproject.toml)."""
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(linter), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{root / 'src'}:{root}", "PATH": "/usr/bin:/bin"})


def test_import_contracts_are_kept() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "KEPT" in done.stdout


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _path_tricks(path: Path) -> bool:
    return "sys.path.insert" in path.read_text() or "spec_from_file_location" in path.read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_import_no_other_benchmark_nor_tests(path: Path) -> None:
    siblings = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {path.stem}
    imported = _imported_modules(path)
    assert not imported & (siblings | {"tests", "conftest", "prod_support"}), imported & siblings
    assert not _path_tricks(path), f"{path.name} edits sys.path or loads files as modules"


def test_the_package_never_reaches_outside_src() -> None:
    offenders = []
    for path in (ROOT / "src").rglob("*.py"):
        imported = _imported_modules(path)
        if imported & {"benchmarks", "pipelines", "studies", "tests", "conftest"} or _path_tricks(path):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def _planted(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """import-linter on a copy of the tree with `line` added to `module` (a path under src/)."""
    for folder in ("src", "studies"):
        subprocess.run(["cp", "-r", str(ROOT / folder), str(tmp_path / folder)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    bad = tmp_path / "src" / module
    bad.write_text(bad.read_text() + f"\n{line}  # noqa\n")
    return _lint_imports(tmp_path)


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The contracts must be able to fail: a model importing eval is reported BROKEN."""
    done = _planted(tmp_path, "detsim/models/shower_cnn.py", "from detsim.eval import suite")
    assert done.returncode != 0 and "detsim.models.shower_cnn -> detsim.eval" in done.stdout


def test_the_checker_catches_the_product_importing_a_study(tmp_path: Path) -> None:
    """The product never imports the studies: a GW module importing the G2Net study is reported BROKEN."""
    done = _planted(tmp_path, "detsim/gw/synth.py", "from studies.gw import samples")
    assert done.returncode != 0 and "detsim.gw.synth -> studies.gw.samples" in done.stdout, done.stdout[-3000:]
    assert "The product never imports the studies BROKEN" in done.stdout


def test_the_checker_catches_generation_importing_a_simulator(tmp_path: Path) -> None:
    """Judging and generating take the readout threshold and the energy spectra from the ground floor: generation
    importing the parametric simulator's room is reported BROKEN (the layers alone would allow it)."""
    done = _planted(tmp_path, "detsim/generate.py", "from detsim.sim.calo import response")
    assert done.returncode != 0 and "detsim.generate -> detsim.sim.calo.response" in done.stdout, done.stdout[-3000:]
    assert "Judging and generating never import a simulator BROKEN" in done.stdout
    assert "Rooms are stacked: nothing imports upward KEPT" in done.stdout


def test_the_checker_catches_the_runtime_importing_the_model(tmp_path: Path) -> None:
    """The generation runtime knows the VAE's parts by what they do; the model builds its ShowerGenerator from them.
    The runtime importing the model (a circle between the two rooms) is reported BROKEN."""
    done = _planted(tmp_path, "detsim/runtime/generator.py", "from detsim.models.vae import heads")
    assert done.returncode != 0 and "detsim.runtime.generator -> detsim.models.vae.heads" in done.stdout, done.stdout[-3000:]
    assert "Rooms are stacked: nothing imports upward BROKEN" in done.stdout
