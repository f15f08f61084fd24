"""Build hook only (the project is described in pyproject.toml): record the git commit in the wheel.

An installed (non-editable) detsim has no `.git` to ask; `detsim.provenance.git_commit` reads
`detsim/_build_info.py` written here instead. Without git the file is simply not written.
"""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))  # this checkout's detsim: its package module and provenance need the stdlib only
from detsim.provenance import write_build_info  # noqa: E402


class BuildPyWithCommit(build_py):
    def run(self) -> None:
        super().run()
        package_dir = Path(self.build_lib) / "detsim"
        if package_dir.is_dir():
            write_build_info(HERE, package_dir)


setup(cmdclass={"build_py": BuildPyWithCommit})
