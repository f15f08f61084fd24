"""Build hook only (the project is described in pyproject.toml): record the git commit in the wheel.

An installed (non-editable) detsim has no `.git` to ask; `detsim.provenance.git_commit` reads
`detsim/_build_info.py` written here instead. Without git the file is simply not written.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithCommit(build_py):
    def run(self) -> None:
        super().run()
        spec = importlib.util.spec_from_file_location("_detsim_provenance", HERE / "src" / "detsim" / "provenance.py")
        provenance = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(provenance)
        package_dir = Path(self.build_lib) / "detsim"
        if package_dir.is_dir():
            provenance.write_build_info(HERE, package_dir)


setup(cmdclass={"build_py": BuildPyWithCommit})
