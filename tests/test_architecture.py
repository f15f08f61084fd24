"""The room rules of docs/architecture.md hold: import-linter's contracts (pyproject.toml) for the package and the
studies, and an AST check for the folders that are not packages (benchmarks never import each other or tests/;
src never reaches into benchmarks/, pipelines/, studies/ or tests/). Imports sit at the top of their modules except
an optional extra's, deferred in one place per extra (AST check). Each contract kind is shown able to fail."""

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


# -- honest imports: at the top of the module, except the optional extras, each deferred in one place ------------------

# where each optional extra of pyproject.toml is imported inside a function (docs/architecture.md, "Adding things")
EXTRAS_MODULES = ("detsim/extras.py", "detsim/sim/geant4/bindings.py")
# the one other deferral, and exactly what it defers: Hydra imports every plugin module into every app it starts, so
# the Optuna sweeper imports MLflow tracking (torch, Lightning, MLflow) when a sweep starts
DEFERRED_ELSEWHERE = {"detsim/training/sweeper.py": ["detsim.tracking", "mlflow.tracking"]}
# the extras' packages and the only modules that import them (geant4-pybind's application, `build`, imports it at
# its top and is itself imported by `bindings.load` only)
EXTRA_PACKAGES = {"pycbc": {"detsim/extras.py"}, "onnx": {"detsim/extras.py"}, "onnxscript": {"detsim/extras.py"},
                  "onnxruntime": {"detsim/extras.py"},
                  "geant4_pybind": {"detsim/sim/geant4/bindings.py", "detsim/sim/geant4/build.py"}}


def function_level_imports(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, module) of every import statement inside a function body (a nested function's counted once)."""
    found: dict[int, tuple[int, str]] = {}
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found[id(sub)] = (sub.lineno, ", ".join(alias.name for alias in sub.names))
                elif isinstance(sub, ast.ImportFrom):
                    found[id(sub)] = (sub.lineno, "." * sub.level + (sub.module or ""))
    return sorted(found.values())


def deferred_imports(src: Path) -> list[str]:
    """`path:line: module` of every function-level import under `src/detsim` outside the extras modules (and the
    sweeper's, if it defers anything else or more)."""
    offenders = []
    for path in sorted((src / "detsim").rglob("*.py")):
        name = path.relative_to(src).as_posix()
        if name in EXTRAS_MODULES:
            continue
        found = function_level_imports(path.read_text(), str(path))
        if sorted(module for _, module in found) != DEFERRED_ELSEWHERE.get(name, []):
            offenders += [f"{name}:{line}: {module}" for line, module in found]
    return offenders


def test_imports_sit_at_the_top_except_the_deferred_extras() -> None:
    """Why: an import inside a function hides a dependency (and an import cycle) until the function runs; only an
    optional extra may wait, and only in its one place, so that detsim imports without it (and the sweeper's MLflow
    tracking, which Hydra's plugin scan would otherwise load into every app)."""
    assert deferred_imports(ROOT / "src") == []


def test_the_import_check_catches_an_import_inside_a_function(tmp_path: Path) -> None:
    """The check must be able to fail: a planted function-level import is reported, in a nested function and an async
    function too, while the module-level ones are not; in the tree, a function's import in geometry.py is reported."""
    source = ("import json\nfrom pathlib import Path\n\n\ndef outer():\n    import numpy as np\n\n"
              "    def inner():\n        from detsim.io import hdf5\n    return np, inner\n\n\n"
              "async def fetch():\n    from . import paths\n")
    assert function_level_imports(source) == [(6, "numpy"), (9, "detsim.io"), (14, ".")]
    subprocess.run(["cp", "-r", str(ROOT / "src" / "detsim"), str(tmp_path / "detsim")], check=True)
    planted = tmp_path / "detsim" / "geometry.py"
    lines = planted.read_text().count("\n")
    planted.write_text(planted.read_text() + "\n\ndef _late_reader():\n    import h5py\n\n    return h5py\n")
    assert deferred_imports(tmp_path) == [f"detsim/geometry.py:{lines + 4}: h5py"]


def test_each_optional_extra_is_imported_in_its_one_place() -> None:
    """pycbc and the ONNX packages only in `detsim.extras`; geant4_pybind only in `detsim.sim.geant4.bindings` and
    the application it loads (`build`), which nothing else imports: so the rest of detsim imports without them."""
    misplaced = []
    for path in sorted((ROOT / "src" / "detsim").rglob("*.py")):
        name = path.relative_to(ROOT / "src").as_posix()
        misplaced += [f"{name}: {package}" for package in sorted(_imported_modules(path) & EXTRA_PACKAGES.keys())
                      if name not in EXTRA_PACKAGES[package]]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            imports_build = (isinstance(node, ast.ImportFrom) and node.module == "detsim.sim.geant4"
                             and any(alias.name == "build" for alias in node.names)) or (
                isinstance(node, ast.Import) and any(alias.name == "detsim.sim.geant4.build" for alias in node.names))
            if imports_build and name != "detsim/sim/geant4/bindings.py":
                misplaced.append(f"{name}: detsim.sim.geant4.build")
    assert misplaced == []
