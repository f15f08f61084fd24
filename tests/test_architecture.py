"""The room rules of docs/architecture.md hold: import-linter's contracts (pyproject.toml) for the package,
and an AST check for the folders that are not packages (benchmarks never import each other or tests/;
src never reaches into benchmarks/, pipelines/ or tests/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
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
        if imported & {"benchmarks", "pipelines", "tests", "conftest"} or _path_tricks(path):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The contracts must be able to fail: a model importing eval is reported BROKEN."""
    src = tmp_path / "src"
    subprocess.run(["cp", "-r", str(ROOT / "src"), str(src)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    bad = src / "detsim" / "models" / "shower_cnn.py"
    bad.write_text(bad.read_text() + "\nfrom detsim.eval import suite  # noqa\n")
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "detsim.models.shower_cnn -> detsim.eval" in done.stdout
